"""Reading the CSV tables users and imagers write (metadata, manifests, LoadData, plate maps).

Copies found in the wild differ in line endings (LF, CRLF, CR), quoting and a UTF-8 BOM; the csv
module with newline="" and utf-8-sig reads them all. Errors name the file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path


class MetadataError(ValueError):
    """A metadata table is missing, unreadable or lacks a column; the message names the file."""


def read_table(path: Path, required: tuple[str, ...], delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV (or, with delimiter="\t", a TSV) as dicts with stripped keys and values; any line ending
    or quoting."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path}: not UTF-8 text ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if reader.fieldnames is None:
        raise MetadataError(f"{path}: empty file")
    header = {(k or "").strip() for k in reader.fieldnames}
    missing = [c for c in required if c not in header]
    if missing:
        raise MetadataError(f"{path}: missing column(s) {', '.join(missing)}")
    rows = []
    for row in reader:
        if None in row:  # csv puts the values past the header's last column in a list under None
            raise MetadataError(f"{path}, line {reader.line_num}: more values than the header has columns")
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    return rows

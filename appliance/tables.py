"""Reading the CSV tables users and imagers write (metadata, manifests, LoadData, plate maps).

Copies found in the wild differ in line endings (LF, CRLF, CR), quoting and a UTF-8 BOM; the csv
module with newline="" and utf-8-sig reads them all. Errors name the file.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path


class MetadataError(ValueError):
    """A metadata table is missing, unreadable or lacks a column; the message names the file."""


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file; MetadataError for anything else. Opened without blocking and checked
    before reading: a FIFO (or a device) named like a CSV would otherwise hang the command in open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise MetadataError(f"{path}: not a regular file but {file_kind(mode)}; refused")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1  # the file object closes it
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages: "a FIFO", "a folder", ..."""
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "an unknown kind of file")


def read_table(path: Path, required: tuple[str, ...], delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV (or, with delimiter="\t", a TSV) as dicts with stripped keys and values; any line ending
    or quoting."""
    try:
        text = read_regular_file(path).decode("utf-8-sig")
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

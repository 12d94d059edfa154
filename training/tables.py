"""The CSV tables of a run (split.csv, metrics.csv, steps.csv, evaluation/*.csv): written whole
through appliance.files (a reader never sees half a file), read back as dicts."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from appliance.files import write_atomically


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    return write_atomically(path, write)


def write_dicts(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> Path:
    """Rows as dicts, `columns` in order."""
    return write_csv(path, columns, ([row[c] for c in columns] for row in rows))


def append_row(path: Path, row: Sequence) -> None:
    """One row at the end: steps.csv gains a row every optimizer step, too often to rewrite it each time
    (a resumed run rewrites it whole, cut back to its checkpoint)."""
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(row)


def read_csv(path: Path) -> list[dict]:
    """The rows as dicts; none when the file does not exist yet."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

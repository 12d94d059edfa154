"""Text that came from files, made safe to show: in messages and reports, and in the CSVs we write.

Messages never carry a file's bytes: a library that says what it found (tifffile's "not a TIFF file:
header=b'root'") would otherwise copy the first bytes of whatever a path points at (a link to
/etc/passwd named like a TIFF) into failures.csv and the report.

A CSV text cell that starts with = + - @, a tab or a carriage return is a formula to a spreadsheet
(`=HYPERLINK(...)` as a compound name from a plate map): written with a single quote in front, as
OWASP recommends, so it shows as text. Numbers are written as numbers; Parquet keeps the text as it
is. restore_formula undoes it for our own readers, exactly: a cell that was quotes then one of those
characters gets one quote more, so nothing a user wrote changes on a round trip.
"""

from __future__ import annotations

import re

FILE_BYTES = re.compile(r"""\bb(['"])(?:\\.|(?!\1).)*\1""")  # a Python bytes literal in a message
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def without_file_bytes(message: str) -> str:
    """The message with any bytes literal (file contents an exception quoted) left out."""
    return FILE_BYTES.sub("(file bytes not shown)", message)


def starts_formula(text: str) -> bool:
    """Quotes, then a character a spreadsheet starts a formula with."""
    return text.lstrip("'").startswith(FORMULA_STARTS)


def neutralise_formula(text: str) -> str:
    """A CSV text cell a spreadsheet shows as text, never evaluates."""
    return "'" + text if starts_formula(text) else text


def restore_formula(text: str) -> str:
    """The text neutralise_formula was given."""
    return text[1:] if text.startswith("'") and starts_formula(text[1:]) else text

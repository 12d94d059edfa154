"""Plate formats, 6 to 1536 wells: their rows and columns, and the smallest one that holds given wells.

Rows are lettered A..Z, then AA, AB, ... (a 1536-well plate has 32 rows, A..AF, and 48 columns),
the naming of ANSI/SLAS 4-2004 plates as imagers and JUMP's platemaps write it (AF48).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase


def row_letter(index: int) -> str:
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA', 31 -> 'AF'."""
    if index < len(ascii_uppercase):
        return ascii_uppercase[index]
    return ascii_uppercase[index // 26 - 1] + ascii_uppercase[index % 26]


def row_index(letters: str) -> int:
    """'A' -> 0, 'AF' -> 31: the inverse of row_letter."""
    letters = letters.upper()
    if len(letters) == 1:
        return ascii_uppercase.index(letters)
    return (ascii_uppercase.index(letters[0]) + 1) * 26 + ascii_uppercase.index(letters[1])


@dataclass(frozen=True)
class PlateFormat:
    wells: int
    rows: int
    columns: int

    @property
    def row_names(self) -> tuple[str, ...]:
        return tuple(row_letter(i) for i in range(self.rows))

    def holds(self, row: str, column: int) -> bool:
        return row in self.row_names and 1 <= column <= self.columns


# The standard SBS footprints, smallest first.
PLATE_FORMATS = tuple(
    PlateFormat(r * c, r, c) for r, c in ((2, 3), (3, 4), (4, 6), (6, 8), (8, 12), (16, 24), (32, 48))
)


def format_of(wells: int) -> PlateFormat:
    for plate in PLATE_FORMATS:
        if plate.wells == wells:
            return plate
    raise ValueError(f"{wells}-well plates are not known; known: {', '.join(str(p.wells) for p in PLATE_FORMATS)}")


def plate_format(positions, wells: int | None = None) -> PlateFormat:
    """The plate of `wells` wells when given, else the smallest of 96, 384 and 1536 holding every (row
    letters, column): a few wells imaged on a 96-well plate must not be drawn as a 6-well plate, so the
    smaller formats are used only when named."""
    positions = list(positions)
    candidates = [format_of(wells)] if wells else [p for p in PLATE_FORMATS if p.wells >= 96]
    for plate in candidates:
        if all(plate.holds(row, column) for row, column in positions):
            return plate
    last = candidates[-1]
    outside = sorted(f"{row}{column:02d}" for row, column in positions if not last.holds(row, column))
    raise ValueError(
        f"wells {', '.join(outside[:5])} lie outside a {last.wells}-well plate "
        f"(A-{last.row_names[-1]} x 1-{last.columns})"
    )

"""Manifest plates: a CSV lists each field's files, for any naming an imager comes up with.

`manifest.csv` in the plate folder (or any CSV given in place of the plate folder; its folder is
the plate folder). Columns: well, site, one path column per channel (named DAPI, Tubulin, Actin
by default, any case; `--channels DAPI=hoechst_file,...` names others), optional compound and
concentration. Paths are relative to the plate folder and must stay inside it once resolved
(symlinks included): a path leaving it (`..`, an absolute path elsewhere, a symlink pointing out)
fails that field, as does a missing file, an empty path, a bad well or site, or a well and
site listed twice. A manifest without the needed columns is a PlateError.
"""

from __future__ import annotations

from pathlib import Path

from appliance.layouts.base import (
    CHANNELS,
    Failure,
    Field,
    Layout,
    LayoutOptions,
    PlateError,
    file_problem,
    parse_well,
    well_name,
)
from appliance.tables import MetadataError, read_table

MANIFEST = "manifest.csv"  # the file name `--layout auto` recognises in a plate folder
NAME = "manifest"
LOOKS_FOR = f"{MANIFEST} in the folder, or a manifest CSV"


def inside_plate(plate_root: Path, value: str) -> Path:
    """The file a table cell names (relative to the plate folder, or absolute), resolved, symlinks
    included; ValueError when it lies outside the plate folder."""
    given = Path(value.replace("\\", "/"))
    path = (given if given.is_absolute() else plate_root / given).resolve()
    if not path.is_relative_to(plate_root):
        raise ValueError(f"{value}: outside the plate folder {plate_root} (resolves to {path}); refused")
    return path


def resolve_inside(plate_root: Path, value: str) -> Path:
    """The file a manifest cell names; ValueError when it is missing or outside the plate folder."""
    path = inside_plate(plate_root, value)
    if problem := file_problem(path, plate_root):
        raise ValueError(f"{value}: {problem}")
    return path


def read_rows(table: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a plate's table (manifest, LoadData CSV); PlateError naming it if it is unreadable or empty."""
    try:
        rows = read_table(table, required)
    except MetadataError as exc:
        raise PlateError(str(exc)) from None
    if not rows:
        raise PlateError(f"{table}: lists no fields")
    return rows


def bad_row(plate: str, well: str, site: str, where: str, problem: ValueError) -> Failure:
    """A table line whose well, site or numbers cannot be read."""
    return Failure(plate, well, int(site) if site.isdigit() else 0, where, f"bad row: {problem}")


def once_each(
    candidates: list[Field], lines: dict[tuple[str, int], list[int]], plate: str, table: str
) -> tuple[list[Field], list[Failure]]:
    """The fields whose well and site one line lists; a Failure for each well and site on several lines."""
    failures = [
        Failure(
            plate,
            well,
            site,
            f"{table} lines {', '.join(map(str, on))}",
            "the same well and site listed more than once",
        )
        for (well, site), on in lines.items()
        if len(on) > 1
    ]
    return [f for f in candidates if len(lines[(f.well, f.site)]) == 1], failures


def is_plate(folder: Path) -> bool:
    return folder.is_file() and folder.suffix.lower() == ".csv" or (folder / MANIFEST).is_file()


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    mapping = options.channels
    manifest = plate_dir if plate_dir.is_file() else plate_dir / MANIFEST
    plate_root = manifest.parent.resolve()
    plate = plate_root.name
    rows = read_rows(manifest, ("well", "site"))
    header = {key.lower(): key for key in (rows[0] if rows else {})}
    columns = {c: header.get(mapping.get(c, c).lower()) for c in CHANNELS}
    lacking = [f"{c} (column {mapping.get(c, c)!r})" for c, column in columns.items() if column is None]
    if lacking:
        raise PlateError(
            f"{manifest}: no path column for {', '.join(lacking)}; columns are "
            f"{', '.join(header.values())}; name them with --channels"
        )

    by_position: dict[tuple[str, int], list[int]] = {}
    candidates, failures = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{manifest.name} line {line}"
        try:
            site = int(row["site"])
            well_row, column = parse_well(row["well"])
            concentration = float(row["concentration"]) if row.get("concentration") else None
        except ValueError as exc:
            failures.append(bad_row(plate, row["well"], row["site"], where, exc))
            continue
        well = well_name(well_row, column)
        by_position.setdefault((well, site), []).append(line)
        try:
            empty = [c for c in CHANNELS if not row[columns[c]]]
            if empty:
                raise ValueError("missing channel " + ", ".join(f"{c} (empty {columns[c]})" for c in empty))
            paths = tuple(resolve_inside(plate_root, row[columns[c]]) for c in CHANNELS)
        except ValueError as exc:
            failures.append(Failure(plate, well, site, where, str(exc)))
            continue
        candidates.append(
            Field(
                plate, well, site, paths, compound=row.get("compound") or None, concentration=concentration, layout=NAME
            )
        )
    fields, repeated = once_each(candidates, by_position, plate, manifest.name)
    return fields, failures + repeated


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover)

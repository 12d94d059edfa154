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
    MetadataError,
    PlateError,
    parse_well,
    read_table,
    well_name,
)

MANIFEST = "manifest.csv"  # the file name `--layout auto` recognises in a plate folder


def resolve_inside(plate_root: Path, value: str) -> Path:
    """The file a manifest cell names; ValueError when it is missing or outside the plate folder."""
    given = Path(value.replace("\\", "/"))
    path = (given if given.is_absolute() else plate_root / given).resolve()
    if not path.is_relative_to(plate_root):
        raise ValueError(f"{value}: outside the plate folder {plate_root} (resolves to {path}); refused")
    if not path.is_file():
        raise ValueError(f"{value}: file not found")
    return path


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    mapping = options.channels
    manifest = plate_dir if plate_dir.is_file() else plate_dir / MANIFEST
    plate_root = manifest.parent.resolve()
    plate = plate_root.name
    try:
        rows = read_table(manifest, ("well", "site"))
    except MetadataError as exc:
        raise PlateError(str(exc)) from None
    if not rows:
        raise PlateError(f"{manifest}: lists no fields")
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
            failures.append(
                Failure(plate, row["well"], int(row["site"]) if row["site"].isdigit() else 0, where, f"bad row: {exc}")
            )
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
                plate,
                well,
                site,
                paths,
                compound=row.get("compound") or None,
                concentration=concentration,
                layout="manifest",
            )
        )
    for (well, site), lines in by_position.items():
        if len(lines) > 1:
            failures.append(
                Failure(
                    plate,
                    well,
                    site,
                    f"{manifest.name} lines {', '.join(map(str, lines))}",
                    "the same well and site listed more than once",
                )
            )
    fields = [f for f in candidates if len(by_position[(f.well, f.site)]) == 1]
    return fields, failures


LAYOUT = Layout(
    "manifest",
    f"{MANIFEST} in the folder, or a manifest CSV",
    lambda plate_dir: plate_dir.is_file() and plate_dir.suffix.lower() == ".csv" or (plate_dir / MANIFEST).is_file(),
    discover,
)

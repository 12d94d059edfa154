"""Finding the fields of a plate, whatever layout the imager wrote it in.

A layout module (appliance/layouts/) turns a plate folder into Fields: one entry per field
with the file (and plane) of each model channel, in the model's order (DAPI, Tubulin, Actin).
This module picks the layout, parses `--channels`, applies a `--platemap` and expands a folder
of plates. A field that cannot be assembled (a channel missing or given twice, a manifest path
leaving the plate) is a Failure, never dropped: a plate report must account for every field
it saw. PlateError means the plate cannot be used at all (no images, a channel map that fits
no file, an unreadable manifest).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from appliance.layouts import (
    bioio_files,
    cellvoyager,
    harmony,
    imagexpress,
    incell,
    loaddata,
    manifest,
    metaxpress_ai,
    ome_tiff,
    ome_zarr,
)
from appliance.layouts.base import (
    CHANNELS,
    Failure,
    Field,
    Layout,
    LayoutOptions,
    PlateError,
    field_order,
    parse_well,
    well_name,
)
from appliance.results import is_results_folder
from appliance.tables import MetadataError, read_table

# In the order `--layout auto` tries them: the most specific sign first, bare TIFF names last.
KNOWN_LAYOUTS: tuple[Layout, ...] = (
    loaddata.LAYOUT,
    manifest.LAYOUT,
    harmony.LAYOUT,
    cellvoyager.LAYOUT,
    ome_zarr.LAYOUT,
    ome_tiff.LAYOUT,
    incell.LAYOUT,
    metaxpress_ai.LAYOUT,
    imagexpress.METAXPRESS,
    bioio_files.LAYOUT,
    imagexpress.BBBC021,
)
LAYOUTS = ("auto", *(layout.name for layout in KNOWN_LAYOUTS))
FILE_LAYOUTS = ("loaddata", "manifest")  # a plate given as one CSV file rather than a folder


def parse_channels(text: str | None) -> dict[str, str]:
    """'DAPI=w1,Tubulin=w2,Actin=w4' -> {'DAPI': 'w1', ...}; channels not named keep the layout's default.

    Names are the model's channels (any case); values are what the layout understands: a
    wavelength (w1), an OME channel name or plane index, a manifest column.
    """
    if not text:
        return {}
    by_lower = {c.lower(): c for c in CHANNELS}
    mapping = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        channel = by_lower.get(key.strip().lower())
        if not sep or not value.strip() or channel is None:
            raise PlateError(
                f"--channels {text!r}: expected CHANNEL=VALUE pairs separated by commas, "
                f"CHANNEL one of {', '.join(CHANNELS)} (e.g. DAPI=w1,Tubulin=w2,Actin=w4)"
            )
        if channel in mapping:
            raise PlateError(f"--channels {text!r}: {channel} is given twice")
        mapping[channel] = value.strip()
    return mapping


def plate_root(plate: Path) -> Path:
    """The plate folder: the folder given, the folder of a CSV given, or the plate holding a sub-folder an
    imager writes (Images/, TimePoint_1/, Projection/, ...) when that is what was given."""
    plate = Path(plate).resolve()
    if plate.is_file():
        return plate.parent
    for layout in KNOWN_LAYOUTS:
        root = layout.root(plate)
        if root != plate:
            return root
    return plate


def plate_name(plate: Path) -> str:
    """A plate's name: its folder's (see plate_root)."""
    return plate_root(plate).name


def detect_layout(plate_dir: Path) -> str:
    """The layout `auto` stands for: the first of KNOWN_LAYOUTS whose sign the plate shows."""
    plate_dir = Path(plate_dir)
    if not plate_dir.is_dir() and not plate_dir.is_file():
        raise PlateError(f"{plate_dir}: not a folder")
    for layout in KNOWN_LAYOUTS:
        if (plate_dir.is_dir() or layout.name in FILE_LAYOUTS) and layout.detect(plate_dir):
            return layout.name
    if not plate_dir.is_dir():
        raise PlateError(f"{plate_dir}: not a plate folder, and not a CSV listing a plate's files")
    raise PlateError(
        f"{plate_dir}: no plate layout recognised; looked for "
        + "; ".join(layout.looks_for for layout in KNOWN_LAYOUTS)
    )


def discover_fields(
    plate_dir: Path, layout: str = "auto", channels: str | None = None, platemap: Path | None = None, **reading
) -> tuple[list[Field], list[Failure]]:
    """Complete fields and failed ones, both sorted by row, column, site.

    plate_dir is a plate folder, or a manifest CSV (its folder is then the plate folder); reading is which
    plane, time point or projection to read (LayoutOptions' plane, timepoint, project).
    """
    plate_dir = Path(plate_dir)
    if layout not in LAYOUTS:
        raise PlateError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    options = LayoutOptions(parse_channels(channels), **reading)
    if layout == "auto":
        layout = detect_layout(plate_dir)
    if layout not in FILE_LAYOUTS and not plate_dir.is_dir():
        raise PlateError(f"{plate_dir}: not a folder")
    fields, failures = next(known for known in KNOWN_LAYOUTS if known.name == layout).discover(plate_dir, options)
    if platemap is not None:
        treatments = read_platemap(platemap, plate=fields[0].plate if fields else plate_dir.name)
        fields = [
            replace(f, compound=treatments[f.well][0], concentration=treatments[f.well][1])
            if f.well in treatments
            else f
            for f in fields
        ]
    return sorted(fields, key=field_order), sorted(failures, key=field_order)


# The platemap of pycytominer and the JUMP / LINCS Cell Painting datasets: a tab-separated .txt, one row per
# well (e.g. broadinstitute/lincs-cell-painting metadata/platemaps/.../C-7161-01-LM6-003.txt). A well without
# a broad_sample holds only the solvent (DMSO): its compound is the solvent, with no concentration.
JUMP_COLUMNS = ("plate_map_name", "well_position", "broad_sample", "mmoles_per_liter", "solvent")


def platemap_rows(path: Path, plate: str) -> list[tuple[int, str, str, str]]:
    """(line, well, compound, concentration text) of each row of a platemap for this plate, our CSV or JUMP's."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8-sig", errors="replace")  # the header line is all that is needed
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    first = head.splitlines()[0] if head else ""
    if "well_position" not in first:  # ours: well, compound, concentration (optional plate), comma-separated
        rows = read_table(path, ("well", "compound", "concentration"))
        return [
            (line, row["well"], row["compound"], row["concentration"])
            for line, row in enumerate(rows, start=2)
            if not row.get("plate") or row["plate"] == plate
        ]
    rows = read_table(path, JUMP_COLUMNS, delimiter="\t" if "\t" in first else ",")
    maps = list(dict.fromkeys(row["plate_map_name"] for row in rows))
    if len(maps) > 1:  # one file, several maps: the plate must name its map
        if plate not in maps:
            raise MetadataError(
                f"{path}: holds the plate maps {', '.join(maps[:5])}; none is named {plate!r}, the plate's name"
            )
        maps = [plate]
    return [
        (line, row["well_position"], row["broad_sample"] or row["solvent"], row["mmoles_per_liter"])
        for line, row in enumerate(rows, start=2)
        if row["plate_map_name"] in maps
    ]


def read_platemap(path: Path, plate: str) -> dict[str, tuple[str | None, float | None]]:
    """well -> (compound, concentration) from our CSV (columns well, compound, concentration) or from a
    pycytominer/JUMP platemap (plate_map_name, well_position, broad_sample, mmoles_per_liter, solvent).

    Ours: an optional `plate` column lets one file serve several plates; only rows naming this
    plate (or leaving it empty) are used. JUMP's: a file holding several maps uses the map named
    as the plate. Concentrations are taken as written (JUMP's: mmoles_per_liter), never converted.
    """
    try:
        rows = platemap_rows(path, plate)
    except MetadataError as exc:
        raise PlateError(f"--platemap {exc}") from None
    treatments, line_of = {}, {}
    for line, well_text, compound, concentration_text in rows:
        try:
            well = well_name(*parse_well(well_text))
            concentration = float(concentration_text) if concentration_text else None
        except ValueError as exc:
            raise PlateError(f"--platemap {path}, line {line}: {exc}") from None
        if well in treatments:
            raise PlateError(f"--platemap {path}: well {well} is on lines {line_of[well]} and {line}")
        treatments[well], line_of[well] = (compound or None, concentration), line
    return treatments


def looks_like_plate(folder: Path) -> bool:
    """Some layout recognises the folder as a plate."""
    return any(layout.detect(folder) for layout in KNOWN_LAYOUTS)


def plate_folders(paths: list[Path], note=lambda message: None) -> list[Path]:
    """Plate folders (or manifest CSVs) as given, and each folder of plates expanded to its plates.

    A results folder (a glob such as data/*/* also matches them) is skipped, with a note, not refused."""
    plates = []
    for path in map(Path, paths):
        if path.is_file() and path.suffix.lower() == ".csv":
            plates.append(path)
        elif is_results_folder(path) and not looks_like_plate(path):
            note(f"{path}: skipped, a results folder rather than a plate")
        elif not path.is_dir():
            raise PlateError(f"{path}: not a folder")
        elif looks_like_plate(path):
            plates.append(path)
        else:
            inside = sorted(p for p in path.iterdir() if p.is_dir() and looks_like_plate(p))
            if not inside:
                raise PlateError(
                    f"{path}: neither a plate folder nor a folder of plate folders; looked for "
                    + "; ".join(layout.looks_for for layout in KNOWN_LAYOUTS)
                )
            plates += inside
    return list(dict.fromkeys(plates))

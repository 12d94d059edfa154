"""CellProfiler LoadData CSVs: the table facilities already write for CellProfiler, one row per field.

Columns, as CellProfiler's LoadData module reads them (an `Image_` prefix is allowed on any):
`FileName_<Ch>` with `PathName_<Ch>` (the folder; absent: the CSV's folder), or `URL_<Ch>` (a
`file:` URL, `file:///abs/dir/img%20name.tif` or `file:relative/name.tif`), for each channel
<Ch>; `Frame_<Ch>` (from 0) when the channel is a page of a multi-page TIFF; `Metadata_Well`
(`B02`, or `Metadata_Row` and `Metadata_Col`, as pe2loaddata writes them: row letter or number),
`Metadata_Site` (else `Metadata_Field`/`Metadata_FieldID`; none: one site per well) and
`Metadata_Plate` (one plate per CSV). Other columns are ignored.

A plate is a folder holding `load_data.csv`, or any LoadData CSV given in place of the folder
(`--layout auto` knows a CSV by a `URL_` column or a `FileName_`/`PathName_` pair in its header);
the plate folder is the CSV's folder and gives the plate its name. Paths follow the manifest's
rules: relative to the CSV's folder, and inside it once resolved (absolute paths too); one
leading out fails its field, as does an empty file name, a URL other than `file:`, a `Series_`
other than 0, a bad well or site, or a well and site on two lines. A file listed but absent fails
its field when it is read. Channels are the <Ch> names: `--channels DAPI=OrigDNA,...`; by default
a name containing dapi/hoechst, tubulin, actin/phalloidin, else three channels in their order.
A CSV without image columns or well columns, or listing several plates, is a PlateError.
Not supported: images in multi-series files (`Series_` > 0), `http`/`s3`/`omero` URLs,
z-stacks and time series (LoadData's rows are fields; a plane is a `Frame_`).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from appliance.layouts.base import CHANNELS, Failure, Field, Layout, LayoutOptions, PlateError, parse_well, well_name
from appliance.layouts.manifest import bad_row, inside_plate, once_each, read_rows
from appliance.layouts.records import ChannelError, field_of, match_channels, well_at

TABLE = "load_data.csv"  # the name `--layout auto` looks for in a plate folder (pe2loaddata's)
NAME = "loaddata"
LOOKS_FOR = f"{TABLE} in the folder, or a CellProfiler LoadData CSV (FileName_/PathName_ or URL_ columns)"
COLUMN = re.compile(r"^(?:Image_)?(?P<kind>FileName|PathName|URL|Frame|Series)_(?P<channel>.+)$")
ROW_TOKENS = ("wellrow", "well_row", "row")  # CellProfiler's, after Metadata_, any case
COLUMN_TOKENS = ("wellcol", "well_col", "wellcolumn", "well_column", "column", "col")
SITE_TOKENS = ("site", "field", "fieldid")


def image_columns(header: list[str]) -> dict[str, dict[str, str]]:
    """Channel -> {"FileName": column, "PathName": ..., "URL": ..., "Frame": ..., "Series": ...}."""
    channels: dict[str, dict[str, str]] = {}
    for column in header:
        match = COLUMN.match(column)
        if match:
            channels.setdefault(match["channel"], {}).setdefault(match["kind"], column)
    return channels


def is_loaddata(header: list[str]) -> bool:
    return any("URL" in kinds or {"FileName", "PathName"} <= set(kinds) for kinds in image_columns(header).values())


def header_of(path: Path) -> list[str]:
    """The first line of a CSV as column names ([] if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 16).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    return [name.strip() for name in next(csv.reader(io.StringIO(first)), [])]


def find_table(plate: Path) -> Path | None:
    """The LoadData CSV of a plate given as a folder (its load_data.csv) or as the CSV itself."""
    table = plate / TABLE if plate.is_dir() else plate
    if table.suffix.lower() == ".csv" and table.is_file() and is_loaddata(header_of(table)):
        return table
    return None


def is_plate(folder: Path) -> bool:
    return find_table(folder) is not None


def metadata_column(header: list[str], tokens: tuple[str, ...]) -> str | None:
    """The first `Metadata_<token>` column (any case, Image_ prefix allowed), by the order of tokens."""
    by_token = {}
    for column in header:
        name = column.removeprefix("Image_")
        if name.lower().startswith("metadata_"):
            by_token.setdefault(name[len("metadata_") :].lower(), column)
    return next((by_token[t] for t in tokens if t in by_token), None)


def position(row: dict[str, str], columns: dict[str, str | None]) -> tuple[str, int]:
    """(well, site) of a row; ValueError if they cannot be read."""
    if columns["well"]:
        well = well_name(*parse_well(row[columns["well"]]))
    else:
        letter, column = row[columns["row"]], int(row[columns["column"]])
        well = well_at(int(letter), column) if letter.isdigit() else well_name(*parse_well(f"{letter}{column}"))
    return well, int(row[columns["site"]]) if columns["site"] else 1


def image_file(row: dict[str, str], channel: str, columns: dict[str, str], plate_root: Path) -> tuple[Path, int | None]:
    """(file, page or None) of one channel in one row; ValueError saying why not."""
    cell = {kind: row.get(column, "") for kind, column in columns.items()}
    if cell.get("Series", "") not in ("", "0"):
        raise ValueError(f"Series_{channel} {cell['Series']}: images inside multi-series files are not supported")
    url = cell.get("URL", "")
    if url:
        parts = urlsplit(url)
        if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
            value = unquote(parts.path)
        elif len(parts.scheme) > 1:
            raise ValueError(f"URL_{channel} {url}: only file: URLs on this machine are read")
        else:
            value = url  # a plain path (a Windows drive letter parses as a one-letter scheme)
    elif cell.get("FileName"):
        value = f"{cell['PathName']}/{cell['FileName']}" if cell.get("PathName") else cell["FileName"]
    else:
        raise ValueError(f"missing channel {channel} (empty {'URL' if 'URL' in columns else 'FileName'}_{channel})")
    frame = cell.get("Frame", "")
    if frame and not frame.isdigit():
        raise ValueError(f"Frame_{channel} {frame!r} is not a page number (from 0)")
    return inside_plate(plate_root, value), int(frame) if frame else None


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    table = find_table(plate_dir)
    if table is None:
        raise PlateError(
            f"{plate_dir}: no LoadData CSV ({TABLE}, or a CSV with URL_ or FileName_ and PathName_ columns)"
        )
    plate_root = table.parent.resolve()
    plate = plate_root.name
    rows = read_rows(table, ())
    header = list(rows[0])
    by_channel = image_columns(header)
    unnamed = sorted(c for c, kinds in by_channel.items() if "PathName" in kinds and "FileName" not in kinds)
    if unnamed:
        raise PlateError(f"{table}: PathName_{unnamed[0]} without a FileName_{unnamed[0]} column to go with it")
    names = {c: c for c, kinds in by_channel.items() if "FileName" in kinds or "URL" in kinds}
    try:
        ids = match_channels(names, options.channels)
    except ChannelError as exc:
        raise PlateError(f"{table}: {exc}") from None
    columns = {
        "well": metadata_column(header, ("well",)),
        "row": metadata_column(header, ROW_TOKENS),
        "column": metadata_column(header, COLUMN_TOKENS),
        "site": metadata_column(header, SITE_TOKENS),
    }
    if not columns["well"] and not (columns["row"] and columns["column"]):
        raise PlateError(f"{table}: no Metadata_Well column (nor Metadata_Row and Metadata_Col)")
    plate_column = metadata_column(header, ("plate",))
    plates = sorted({row[plate_column] for row in rows if row[plate_column]}) if plate_column else []
    if len(plates) > 1:
        shown = ", ".join(plates[:3]) + (", ..." if len(plates) > 3 else "")
        raise PlateError(f"{table}: lists {len(plates)} plates ({shown}); give a CSV of one plate's rows")

    lines: dict[tuple[str, int], list[int]] = {}
    candidates, failures = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{table.name} line {line}"
        try:
            well, site = position(row, columns)
        except ValueError as exc:
            failures.append(
                bad_row(plate, row.get(columns["well"] or "", ""), row.get(columns["site"] or "", ""), where, exc)
            )
            continue
        lines.setdefault((well, site), []).append(line)
        try:
            found = [image_file(row, ids[c], by_channel[ids[c]], plate_root) for c in CHANNELS]
        except ValueError as exc:
            failures.append(Failure(plate, well, site, where, str(exc)))
            continue
        candidates.append(field_of(plate, well, site, tuple(found), NAME))
    fields, repeated = once_each(candidates, lines, plate, table.name)
    return fields, failures + repeated


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover)

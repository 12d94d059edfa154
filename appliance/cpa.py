"""A plate's results as CellProfiler Analyst opens them: cpa.properties and the SQLite database it names.

The database holds the per-image table CellProfiler's ExportToDatabase writes with a "Single object
table" and no objects (CellProfiler src/frontend/cellprofiler/modules/exporttodatabase.py): table
`Per_Image`, key `ImageNumber`, every other column `Image_<measurement>` (Image_FileName_DAPI,
Image_PathName_DAPI, Image_Metadata_Well, ...), our probabilities and class among them as image
measurements. The properties file follows the one ExportToDatabase writes for it, with
`classification_type = image` (CPA's per-image classification: CPA builds its object table from the
image table itself) and a filter per class, so CPA's Image Gallery and Classifier fetch the fields the
model put in a class. Field names, their meanings and the fields CPA requires: CellProfiler-Analyst's
Properties_README.txt and cpa/properties.py.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import appliance
from appliance.files import write_atomically, write_text
from appliance.result_rows import column_kind, field_columns
from appliance.results import CPA_DB, CPA_PROPERTIES, PlateResults
from appliance.wells import plate_format

IMAGE_TABLE = "Per_Image"
IMAGE_ID = "ImageNumber"
SQL_TYPES = {
    int: "INTEGER",
    bool: "INTEGER",
    float: "FLOAT",
    str: "TEXT",
}  # ExportToDatabase's: COLTYPE_INTEGER/FLOAT, TEXT
CPA_PLATE_TYPES = (6, 24, 96, 384, 1536)  # CPA's supported_plate_types (cpa/properties.py), 5600-spot arrays aside
COLOURS = {"DAPI": "blue", "Tubulin": "green", "Actin": "red"}  # CPA's colour names; other channels: gray


def database_column(column: str) -> str:
    """fields.csv's column -> ExportToDatabase's per-image column: Image_<measurement>, ImageNumber as it is."""
    return column if column == IMAGE_ID else f"Image_{column}"


def filter_name(label: str) -> str:
    """A class as a CPA filter name: letters, digits and _ only (CPA refuses any other)."""
    return "Class_" + re.sub(r"\W+", "_", label).strip("_")


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def write_database(path: Path, results: PlateResults) -> Path:
    columns = field_columns(results.labels, results.channels)
    names = [database_column(c) for c in columns]
    declared = ",\n".join(f"{name} {SQL_TYPES[column_kind(c)]}" for name, c in zip(names, columns))
    rows = [tuple(row[c] for c in columns) for row in results.fields]

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)  # a crashed run's half database would refuse CREATE TABLE
        with sqlite3.connect(tmp) as db:
            db.execute(f"CREATE TABLE {IMAGE_TABLE} (\n{declared},\nPRIMARY KEY ({IMAGE_ID}) )")
            db.executemany(f"INSERT INTO {IMAGE_TABLE} VALUES ({', '.join('?' * len(names))})", rows)
        db.close()

    return write_atomically(path, write)


def plate_type(results: PlateResults) -> str:
    """CPA's plate_type for the plate viewer; empty when CPA knows no plate of that size (12 and 48 wells)."""
    wells = {(row["Metadata_Row"], int(row["Metadata_Column"])) for row in results.fields}
    try:
        wells = plate_format(wells, results.run.get("plate_wells")).wells
    except ValueError:
        return ""
    return str(wells) if wells in CPA_PLATE_TYPES else ""


def properties(results: PlateResults) -> str:
    """The text of cpa.properties: `name = value` lines, lists comma-separated, as CPA's load_file reads them."""
    channels, model = results.channels, results.run.get("model") or {}
    width, height = model.get("input_width"), model.get("input_height")
    groups = {
        "Well": "Image_Metadata_Plate, Image_Metadata_Well",
        "Treatment": "Image_Metadata_Compound, Image_Metadata_Concentration",
        "Class": "Image_Classify_Class",
    }
    lines = [
        f"# CellProfiler Analyst 3.0 properties file, written by mcnn-appliance {appliance.__version__}",
        f"# for plate {results.run.get('plate', '')}: one row per field in {IMAGE_TABLE}, no objects.",
        "",
        "# ==== Database Info ====",
        "db_type         = sqlite",
        f"db_sqlite_file  = {CPA_DB}",  # relative: CPA resolves it beside this file
        "",
        "# ==== Database Tables and Columns ====",
        f"image_table   = {IMAGE_TABLE}",
        f"image_id      = {IMAGE_ID}",
        "plate_id      = Image_Metadata_Plate",
        "well_id       = Image_Metadata_Well",
        "",
        "# ==== Image Path and File Name Columns ====",
        "image_path_cols = " + ",".join(f"Image_PathName_{c}" for c in channels),
        "image_file_cols = " + ",".join(f"Image_FileName_{c}" for c in channels),
        "image_names = " + ",".join(channels),
        "image_channel_colors = " + ",".join(COLOURS.get(c, "gray") for c in channels),
        "channels_per_image = " + ",".join("1" for _ in channels),
        "image_url_prepend =",
        "",
        "# ==== Dynamic Groups ====",
        *(f"group_SQL_{name} = SELECT {IMAGE_ID}, {cols} FROM {IMAGE_TABLE}" for name, cols in groups.items()),
        "",
        "# ==== Image Filters: the fields the model put in each class ====",
        *(
            f"filter_SQL_{filter_name(label)} = SELECT {IMAGE_ID} FROM {IMAGE_TABLE} "
            f"WHERE Image_Classify_Class = {sql_text(label)}"
            for label in results.labels
        ),
        "",
        "# ==== Meta data ====",
        "object_name = field, fields,",
        f"plate_type = {plate_type(results)}",
        "",
        "# ==== Classification: per image, on the image table's numeric columns but the metadata ====",
        "classification_type = image",
        "classifier_ignore_columns = Image_Metadata_.*, Image_Frame_.*",
    ]
    if width and height:  # CPA needs the image size for per-image classification: the model's input size
        lines += [f"image_width = {width}", f"image_height = {height}", f"image_tile_size = {min(width, height)}"]
    return "\n".join(lines) + "\n"


def write_cpa(results: PlateResults, folder: Path | None = None) -> tuple[Path, Path]:
    """Write cpa.db and cpa.properties into folder (the results' own by default); returns their paths."""
    folder = Path(folder or results.out_dir)
    db = write_database(folder / CPA_DB, results)
    return write_text(folder / CPA_PROPERTIES, properties(results)), db

"""classify --cpa: the plate as CellProfiler Analyst opens it, checked against CPA's and CellProfiler's own rules.

CPA is a wx desktop application (not installed here); what it does with the two files is taken from its
source, CellProfiler/CellProfiler-Analyst at f5e1b5e2b2c35bb1aff4516ae5a49fe420df0350:
- cpa/properties.py, Properties.load_file: `name = value` lines split at the first "=", `#` lines and
  blank lines skipped, list fields split at commas (parse_list_value); group_SQL_<name> and
  filter_SQL_<name> queries, filter names of letters, digits and _ only; required fields (Validate):
  db_type, image_table, image_id, image_path_cols, image_file_cols; db_type sqlite needs db_sqlite_file,
  resolved beside the properties file; plate_type one of supported_plate_types; classification_type
  image needs image_width and image_height.
- cpa/dbconnect.py, CreateObjectImageTable: with classification_type image CPA copies the image table
  into <image_table>_objecttable with ObjectNumber and a centre (Image_x_loc, Image_y_loc) added.
- Properties_README.txt and docs/source/3_properties_file.rst: the fields' meanings.
The table follows CellProfiler's ExportToDatabase (CellProfiler/CellProfiler at 5b9c361f,
src/frontend/cellprofiler/modules/exporttodatabase.py): get_create_image_table_statement makes
`CREATE TABLE Per_Image (ImageNumber INTEGER, Image_<feature> <type>, ..., PRIMARY KEY (ImageNumber))`,
and its properties file names image_file_cols Image_FileName_<name>, image_path_cols Image_PathName_<name>,
plate_id / well_id Image_Metadata_<key>.
"""

import re
import sqlite3
from pathlib import Path

from appliance.result_files import read_results, write_results
from tests.appliance.test_results import LABELS, RUN, made_results

# cpa/properties.py's string_vars and list_vars (every field name load_file knows), and its plate types
CPA_STRING_VARS = """db_type db_port db_host db_name db_user db_passwd db_password image_table object_table
image_csv_file object_csv_file table_id image_id object_id plate_id well_id cell_x_loc cell_y_loc cell_z_loc
image_url_prepend image_tile_size image_buffer_size tile_buffer_size area_scoring_column training_set class_table
plate_type check_tables db_sql_file db_sqlite_file use_larger_image_scale rescale_object_coords well_format
link_tables_table link_columns_table image_rescale classification_type image_size image_width image_height
negative_control class_names force_bioformats use_legacy_fetcher process_3D""".split()
CPA_LIST_VARS = """image_path_cols image_channel_paths image_file_cols image_channel_files image_names
image_channel_names image_channel_colors channels_per_image image_channel_blend_modes object_name
classifier_ignore_substrings classifier_ignore_columns image_thumbnail_cols plate_shape""".split()
CPA_REQUIRED = ["db_type", "image_file_cols", "image_id", "image_path_cols", "image_table"]
CPA_PLATE_TYPES = {"6", "24", "96", "384", "1536", "5600"}
CPA_COLOURS = {"red", "green", "blue", "magenta", "cyan", "yellow", "gray", "none"}


def load_properties(path: Path) -> tuple[dict, dict, dict]:
    """(fields, groups, filters) read the way CPA's Properties.load_file reads a properties file."""
    fields, groups, filters = {}, {}, {}
    for number, line in enumerate(path.read_text().split("\n"), start=1):
        if line.strip().startswith("#") or not line.strip():
            continue
        assert "=" in line, f"line {number}: CPA cannot parse {line!r}"
        name, value = (part.strip() for part in line.split("=", 1))
        if name in CPA_STRING_VARS:
            fields[name] = value or None
        elif name in CPA_LIST_VARS:
            fields[name] = [v.strip() for v in value.split(",") if v.strip()] or None
        elif name.startswith("group_SQL_"):
            assert name[10:] not in groups and value
            groups[name[10:]] = value
        elif name.startswith("filter_SQL_"):
            assert not re.search(r"\W", name[11:]) and name[11:] not in filters and value
            filters[name[11:]] = value
        else:
            raise AssertionError(f"line {number}: CPA does not know the field {name!r}")
    return fields, groups, filters


def cpa_results(tmp_path):
    model = {**RUN["model"], "input_height": 1024, "input_width": 1280}
    wells = ["B02", "B03", "C02", "C03", "H12"]
    return made_results(
        tmp_path, wells, sites=2, compounds={"B02": "taxol", "C02": "DMSO"}, run={"cpa": True, "model": model}
    )


def test_cpa_properties_and_database_open_as_cpa_opens_them(tmp_path):
    results = cpa_results(tmp_path)
    summary = write_results(results)
    assert {summary["files"]["cpa_properties"], summary["files"]["cpa_db"]} == {"cpa.properties", "cpa.db"}
    fields, groups, filters = load_properties(tmp_path / "cpa.properties")

    assert all(fields.get(name) for name in CPA_REQUIRED)
    assert (
        fields["db_type"] == "sqlite" and fields["image_table"] == "Per_Image" and fields["image_id"] == "ImageNumber"
    )
    database = tmp_path / fields["db_sqlite_file"]  # relative: CPA joins it to the properties file's folder
    assert fields["plate_type"] in CPA_PLATE_TYPES and fields["plate_type"] == "96"
    assert fields["classification_type"] == "image"
    assert int(fields["image_width"]) == 1280 and int(fields["image_height"]) == 1024
    names = fields["image_names"]
    assert names == ["DAPI", "Tubulin", "Actin"] and fields["image_channel_colors"] == ["blue", "green", "red"]
    assert len(fields["image_path_cols"]) == len(fields["image_file_cols"]) == len(fields["channels_per_image"]) == 3
    assert set(fields["image_channel_colors"]) <= CPA_COLOURS

    with sqlite3.connect(database) as db:
        schema = db.execute("SELECT sql FROM sqlite_master WHERE name = 'Per_Image'").fetchone()[0]
        assert (
            schema.startswith("CREATE TABLE Per_Image (\nImageNumber INTEGER,")
            and "PRIMARY KEY (ImageNumber)" in schema
        )
        columns = [row[1] for row in db.execute("PRAGMA table_info(Per_Image)")]
        types = {row[1]: row[2] for row in db.execute("PRAGMA table_info(Per_Image)")}
        assert all(c == "ImageNumber" or c.startswith("Image_") for c in columns)
        for column in [
            *fields["image_path_cols"],
            *fields["image_file_cols"],
            fields["plate_id"],
            fields["well_id"],
            "Image_Classify_Class",
        ]:
            assert column in columns, column
        assert types["Image_Probability_DMSO"] == "FLOAT" and types["Image_Metadata_Site"] == "INTEGER"
        assert types["Image_Metadata_Well"] == "TEXT" and types["Image_Frame_DAPI"] == "INTEGER"

        rows = db.execute("SELECT * FROM Per_Image ORDER BY ImageNumber").fetchall()
        assert len(rows) == len(results.fields) == 10
        for row, field in zip(rows, results.fields):
            record = dict(zip(columns, row))
            assert record["ImageNumber"] == field["ImageNumber"]
            assert record["Image_Probability_DMSO"] == field["Probability_DMSO"]  # exactly
            assert (record["Image_Metadata_Well"], record["Image_Classify_Class"]) == (
                field["Metadata_Well"],
                field["Classify_Class"],
            )
            # CPA opens image_url_prepend + path + "/" + file
            paths = [f"{record[p]}/{record[f]}" for p, f in zip(fields["image_path_cols"], fields["image_file_cols"])]
            assert paths == [f"/p/{field['Metadata_Well']}_s{field['Metadata_Site']}_w{n}.tif" for n in (1, 2, 4)]

        # every group and filter is a query SQLite runs: groups give every image, a filter the fields of its class
        for name, query in groups.items():
            assert len(db.execute(query).fetchall()) == 10, name
        assert set(filters) == {"Class_" + re.sub(r"\W+", "_", label) for label in LABELS}
        for label in LABELS:
            found = {n for (n,) in db.execute(filters["Class_" + re.sub(r"\W+", "_", label)])}
            assert found == {f["ImageNumber"] for f in results.fields if f["Classify_Class"] == label}, label

        # what CPA does on connecting with classification_type image (dbconnect.CreateObjectImageTable, SQLite)
        object_table = "Per_Image_objecttable"
        db.execute(
            f"CREATE TABLE {object_table} (ImageNumber INTEGER, ObjectNumber INTEGER, Image_x_loc float, "
            f"Image_y_loc float, {', '.join(f'{c} {types[c]}' for c in columns if c != 'ImageNumber')})"
        )
        db.execute(f"INSERT INTO {object_table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM Per_Image")
        db.execute(f"UPDATE {object_table} SET ObjectNumber=1, Image_x_loc=640, Image_y_loc=512")
        assert db.execute(f"SELECT COUNT(*) FROM {object_table}").fetchone() == (10,)
    db.close()


def test_cpa_files_follow_the_results_and_leave_with_them(tmp_path):
    """Read back and written again, the set still has its CPA files; a run without --cpa removes old ones."""
    write_results(cpa_results(tmp_path))
    written = (tmp_path / "cpa.properties").read_text()
    again = read_results(tmp_path)
    write_results(again)
    assert (tmp_path / "cpa.properties").read_text() == written and (tmp_path / "cpa.db").is_file()
    write_results(made_results(tmp_path, ["B02"]))
    assert not (tmp_path / "cpa.properties").exists() and not (tmp_path / "cpa.db").exists()


def test_plate_types_cpa_does_not_know_are_left_blank(tmp_path):
    from appliance.cpa import plate_type

    assert plate_type(made_results(tmp_path, ["B02", "P24"])) == "384"
    assert plate_type(made_results(tmp_path, ["AF48"])) == "1536"
    assert plate_type(made_results(tmp_path, ["A01"], run={"plate_wells": 24})) == "24"
    assert plate_type(made_results(tmp_path, ["A01"], run={"plate_wells": 48})) == ""  # CPA has no 48-well plate


def test_classify_cpa_writes_the_plate_for_cpa(tiny_model, tmp_path):
    """Through the command line: the fields classify wrote, one row each, opening the TIFFs classify read."""
    import subprocess
    import sys

    from tests.conftest import write_plate

    written = write_plate(tmp_path / "plate", wells=("B02", "C03"), sites=(1, 2))
    cli = [sys.executable, "-c", "from appliance.cli import app; app(prog_name='mcnn-appliance')"]
    command = ["classify", str(tmp_path / "plate"), "--model", str(tiny_model), "--out", str(tmp_path / "out")]
    run = subprocess.run([*cli, *command, "--cpa", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    fields, _, _ = load_properties(tmp_path / "out" / "cpa.properties")
    assert (fields["image_width"], fields["image_height"]) == ("128", "128")  # the tiny model's input
    with sqlite3.connect(tmp_path / "out" / fields["db_sqlite_file"]) as db:
        rows = db.execute(
            "SELECT ImageNumber, Image_Metadata_Well, Image_Metadata_Site, Image_PathName_Actin, Image_FileName_Actin "
            "FROM Per_Image ORDER BY ImageNumber"
        ).fetchall()
    db.close()
    assert [r[:3] for r in rows] == [(1, "B02", 1), (2, "B02", 2), (3, "C03", 1), (4, "C03", 2)]
    assert all(Path(r[3], r[4]) == written[(r[1], r[2])]["Actin"].resolve() for r in rows)

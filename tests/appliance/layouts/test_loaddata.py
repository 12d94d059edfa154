"""CellProfiler LoadData CSVs (FileName_/PathName_ or URL_, Frame_, Metadata_) as write_loaddata writes them."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields, plate_folders
from tests.appliance.layouts.same_fields import (
    classified_as_bbbc021,
    discovered_with_a_file_gone,
    pixels,
    random_images,
)
from tests.appliance.layouts.write_loaddata import write_plate

CHANNELS = "DAPI=OrigDNA"  # OrigTubulin and OrigActin say which they are; DNA does not


def edit_table(table: Path, edit) -> Path:
    """Rewrite a CSV through edit(list of row dicts) -> list of row dicts (columns from the first row)."""
    with open(table, newline="") as f:
        rows = edit(list(csv.DictReader(f)))
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def test_fields_and_pixels_are_those_written(tmp_path):
    images = random_images()
    plate = write_plate(tmp_path / "BR00117035", images, extra=("OrigER",))
    assert detect_layout(plate) == "loaddata" and detect_layout(plate / "load_data.csv") == "loaddata"
    fields, failures = discover_fields(plate, channels=CHANNELS)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout, f.planes) for f in fields] == [
        ("BR00117035", well, site, "loaddata", None) for well, site in sorted(images)
    ]
    assert fields[3].paths == tuple(plate / "Images" / f"r03c03f02p01-ch{c}sk1fk1fl1.tiff" for c in (1, 2, 3))
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))
    assert discover_fields(plate / "load_data.csv", channels=CHANNELS) == (fields, [])


@pytest.mark.parametrize(
    "options",
    [
        {"paths": "relative"},
        {"urls": True},
        {"urls": True, "paths": "relative"},
        {"frames": True, "urls": True},
        {"frames": True, "prefix": "Image_"},
    ],
)
def test_urls_relative_paths_frames_and_the_image_prefix(tmp_path, options):
    images = random_images(wells=("B02", "H12"), sites=(1, 9))
    plate = write_plate(tmp_path / "plate one", images, **options)
    fields, failures = discover_fields(plate, channels=CHANNELS)
    assert failures == [] and [(f.well, f.site) for f in fields] == sorted(images)
    assert [f.planes for f in fields] == [(0, 1, 2) if options.get("frames") else None] * 4
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))


def test_any_csv_given_its_channels_by_name_and_well_from_row_and_column(tmp_path):
    images = random_images(wells=("B02", "P24"), sites=(1,))
    table = write_plate(tmp_path / "plate", images, names=("Hoechst", "Tubulin", "Actin"), table="cp_input.csv")
    assert detect_layout(table) == "loaddata" and plate_folders([table]) == [table]
    fields, _ = discover_fields(table)  # names that say which they are: no --channels
    assert [(f.plate, f.well) for f in fields] == [("plate", "B02"), ("plate", "P24")]
    edit_table(table, lambda rows: [{k: v for k, v in row.items() if k != "Metadata_Well"} for row in rows])
    assert discover_fields(table) == (fields, [])  # Metadata_Row 16, Metadata_Col 24 -> P24
    with pytest.raises(PlateError, match=r"cp_input\.csv: DAPI='DNA': no channel\(s\) of that id or name"):
        discover_fields(table, channels="DAPI=DNA")
    swapped, _ = discover_fields(table, channels="Tubulin=actin,Actin=Tubulin")
    assert swapped[0].paths == (fields[0].paths[0], fields[0].paths[2], fields[0].paths[1])


def test_a_manifest_is_still_a_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_text("well,site,DAPI,Tubulin,Actin\nB02,1,a.tif,b.tif,c.tif\n")
    assert detect_layout(tmp_path / "manifest.csv") == "manifest" and detect_layout(tmp_path) == "manifest"


def test_rows_that_cannot_be_a_field_are_failures(tmp_path):
    images = random_images(wells=("B02", "B03", "B04", "B05", "B06", "B07", "B08"), sites=(1,))
    plate = write_plate(tmp_path / "screen" / "plate", images, paths="relative")
    tifffile.imwrite(tmp_path / "screen" / "elsewhere.tiff", images["B03", 1][0])
    (plate / "Images" / "r02c02f01p01-ch2sk1fk1fl1.tiff").unlink()  # listed, absent: fails when read

    def edit(rows):
        changes = {
            "B03": {"PathName_OrigDNA": "..", "FileName_OrigDNA": "elsewhere.tiff"},
            "B04": {"FileName_OrigActin": ""},
            "B05": {"PathName_OrigTubulin": str(tmp_path / "screen")},
            "B06": {"Metadata_Site": "first"},
        }
        rows = [{**row, **changes.get(row["Metadata_Well"], {})} for row in rows]
        return rows + [dict(rows[-1])]  # B08 twice

    table = edit_table(plate / "load_data.csv", edit)
    fields, failures = discovered_with_a_file_gone(plate, CHANNELS, "r02c02f01p01-ch2sk1fk1fl1.tiff")
    assert [(f.well, f.site) for f in fields] == [("B02", 1), ("B07", 1)]
    reasons = {f.well: (f.file, f.reason) for f in failures}
    assert re.fullmatch(
        r"\.\./elsewhere\.tiff: outside the plate folder .*plate \(resolves to .*\); refused", reasons["B03"][1]
    )
    assert reasons["B04"] == ("load_data.csv line 4", "missing channel OrigActin (empty FileName_OrigActin)")
    assert "outside the plate folder" in reasons["B05"][1]
    assert reasons["B06"] == ("load_data.csv line 6", "bad row: invalid literal for int() with base 10: 'first'")
    assert reasons["B08"] == ("load_data.csv lines 8, 9", "the same well and site listed more than once")
    assert table.is_file()


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"URL_OrigDNA": "https://example.org/x.tiff"}, "URL_OrigDNA https://example.org/x.tiff: only file: URLs"),
        ({"URL_OrigDNA": "file://server/share/x.tiff"}, "only file: URLs on this machine"),
        ({"Series_OrigDNA": "2"}, "Series_OrigDNA 2: images inside multi-series files are not supported"),
        ({"Frame_OrigDNA": "first"}, "Frame_OrigDNA 'first' is not a page number"),
    ],
)
def test_urls_series_and_frames_it_cannot_read_fail_the_field(tmp_path, change, reason):
    plate = write_plate(tmp_path / "plate", random_images(wells=("B02",), sites=(1,)), urls=True, frames=True)
    edit_table(plate / "load_data.csv", lambda rows: [{**row, **change} for row in rows])
    fields, (failure,) = discover_fields(plate, channels=CHANNELS)
    assert fields == [] and reason in failure.reason


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda rows: [{k: v for k, v in r.items() if k not in ("Metadata_Well", "Metadata_Row")} for r in rows],
            "no Metadata_Well column",
        ),
        (lambda rows: [rows[0], {**rows[1], "Metadata_Plate": "other"}], r"lists 2 plates \(other, plate\)"),
        (
            lambda rows: [{k: v for k, v in r.items() if k != "FileName_OrigTubulin"} for r in rows],
            "PathName_OrigTubulin without a FileName_OrigTubulin",
        ),
    ],
)
def test_a_table_that_cannot_describe_the_plate_is_a_plate_error_naming_it(tmp_path, edit, message):
    plate = write_plate(tmp_path / "plate", random_images())
    table = edit_table(plate / "load_data.csv", edit)
    with pytest.raises(PlateError, match=f"{re.escape(str(table))}: {message}"):
        discover_fields(plate, channels=CHANNELS)
    table.write_bytes(b"FileName_DNA,PathName_DNA,Metadata_Well\n\xff\xfe,x,B02\n")
    with pytest.raises(PlateError, match=f"{re.escape(str(table))}: not UTF-8 text"):
        discover_fields(table)


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=6)
    plate = write_plate(tmp_path / "plate", images, urls=True, frames=True, extra=("OrigER",))
    (plate / "Images" / "C02_s2.tiff").unlink()
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=CHANNELS)
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["File"], f["Reason"]) for f in failures] == [
        ("C02", "2", "C02_s2.tiff", "file not found")
    ]

"""ImageXpress HCS.ai acquisitions (.jdce + image_metadata CSV, `..._t0_B02_s0_w0_z0.tif`) as write_metaxpress_ai
lays them out."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields
from tests.appliance.layouts.same_fields import (
    classified_as_bbbc021,
    discovered_with_a_file_gone,
    pixels,
    random_images,
)
from tests.appliance.layouts.write_metaxpress_ai import write_plate
from tests.conftest import SIZE

DYES = "Tubulin=FITC,Actin=TRITC"  # channels named by filter: only DAPI says which
NAME = "test_data_2026-03-02_13-57-52"


def edit_table(experiment: Path, edit) -> Path:
    """Rewrite image_metadata_1.csv through edit(list of row dicts) -> list of row dicts."""
    table = experiment / "image_metadata_1.csv"
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, edit(list(reader))
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return table


def test_fields_and_pixels_are_those_written(tmp_path):
    images = random_images()
    plate = write_plate(tmp_path / NAME, images)
    assert detect_layout(plate) == "metaxpress-ai" and detect_layout(plate / "experiment") == "metaxpress-ai"
    fields, failures = discover_fields(plate, channels=DYES)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout, f.planes, f.source) for f in fields] == [
        (NAME, well, site, "metaxpress-ai", None, "") for well, site in sorted(images)
    ]
    assert fields[3].paths == tuple(
        plate / "experiment" / "timepoint0" / f"test_data_t0_C03_s1_w{w}_z0.tif" for w in range(3)
    )
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))
    assert discover_fields(plate / "experiment", channels=DYES) == (fields, [])  # named after the acquisition
    (plate / "experiment").rename(plate / "experiment_montage")
    with pytest.raises(PlateError, match="experiment_montage: stitched montages are not supported"):
        discover_fields(plate / "experiment_montage")


def test_channels_by_name_or_wavelength(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path / NAME, images, names=("Cy5", "DAPI", "FITC"), extra=("TRITC",))
    with pytest.raises(PlateError, match=r"no channel name matches Tubulin, Actin \(the channels are 0 \(Cy5\), 1"):
        discover_fields(plate)
    by_name, _ = discover_fields(plate, channels="Tubulin=dapi,Actin=FITC,DAPI=Cy5")
    by_number, _ = discover_fields(plate, channels="DAPI=0,Tubulin=1,Actin=2")
    assert by_name == by_number and np.array_equal(pixels(by_name[0]), np.stack(images["B02", 1]))


def test_z_stacks_need_a_plane_or_a_projection_and_the_experiment_folder_holds_the_instruments(tmp_path):
    images = random_images(wells=("B02", "C03"), sites=(1,), shape=(3, *SIZE))
    plate = write_plate(tmp_path / NAME, images)
    with pytest.raises(PlateError, match=r"3 planes \(0, 1, 2\); choose one with --plane N, or project"):
        discover_fields(plate, channels=DYES)
    for plane in range(3):  # ZIndex, from 0, as in the file names
        fields, _ = discover_fields(plate, channels=DYES, plane=plane)
        assert fields[0].paths[0].name == f"test_data_t0_B02_s0_w0_z{plane}.tif"
        for field in fields:
            assert np.array_equal(pixels(field), np.stack([a[plane] for a in images[field.well, field.site]]))
    projected, _ = discover_fields(plate, channels=DYES, project="max")
    instruments, _ = discover_fields(plate / "experiment", channels=DYES)
    assert [f.plate for f in instruments] == [NAME, NAME] and instruments[0].source == ""
    for mine, theirs in zip(projected, instruments):
        want = np.stack([np.maximum(np.maximum(a[0], a[1]), a[2]) for a in images[mine.well, mine.site]])
        assert np.array_equal(pixels(mine), want) and np.array_equal(pixels(theirs), want)


def test_several_time_points_need_a_time_point(tmp_path):
    images = random_images(wells=("D04",), sites=(1, 2), shape=(2, 1, *SIZE))
    plate = write_plate(tmp_path / NAME, images)
    with pytest.raises(PlateError, match=r"2 time points \(0, 1\); choose one with --timepoint N"):
        discover_fields(plate, channels=DYES)
    fields, _ = discover_fields(plate, channels=DYES, timepoint=1)
    assert fields[1].paths[2] == plate / "experiment" / "timepoint1" / "test_data_t1_D04_s1_w2_z0.tif"
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[1, 0] for a in images[field.well, field.site]]))


def test_missing_unlisted_and_outside_images(tmp_path):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1,))
    plate = write_plate(tmp_path / "screen" / NAME, images)
    experiment = plate / "experiment"
    (experiment / "timepoint0" / "test_data_t0_B02_s0_w1_z0.tif").unlink()  # listed, absent: fails when read
    tifffile.imwrite(tmp_path / "screen" / "elsewhere.tif", images["B03", 1][1])

    def edit(rows):
        for row in rows:
            if row["ImageFileName"] == "test_data_t0_B03_s0_w1_z0.tif":
                row["ImageSubFolderPath"], row["ImageFileName"] = "../..", "elsewhere.tif"
        return [r for r in rows if r["ImageFileName"] != "test_data_t0_C02_s0_w2_z0.tif"]

    edit_table(experiment, edit)
    fields, failures = discovered_with_a_file_gone(plate, DYES, "test_data_t0_B02_s0_w1_z0.tif")
    assert [f.well for f in fields] == ["B02"]
    reasons = {f.well: f.reason for f in failures}
    assert re.fullmatch(r".*/\.\./\.\./elsewhere\.tif: outside the plate folder .*; refused", reasons["B03"])
    assert reasons["C02"] == "missing channel Actin (2: TRITC)"


@pytest.mark.parametrize(
    "where, edit, message",
    [
        (".jdce", lambda path: path.write_text("{ not json"), r"\.jdce: the \.jdce index is not readable JSON"),
        (".jdce", lambda path: path.write_text('{"ImageStack": {}}'), r"\.jdce: no ImageStack\.AutoLead"),
        (
            ".csv",
            lambda path: path.write_text("Well,Row\nB - 2,2\n"),
            r"image_metadata_1\.csv: missing column\(s\) Col",
        ),
        (".csv", None, r"image_metadata_1\.csv: line 3: ZIndex 'top' is not a whole number"),
    ],
)
def test_a_bad_index_is_a_plate_error_naming_it(tmp_path, where, edit, message):
    plate = write_plate(tmp_path / NAME, random_images())
    experiment = plate / "experiment"
    if edit is None:
        edit_table(experiment, lambda rows: [*rows[:1], {**rows[1], "ZIndex": "top"}, *rows[2:]])
    else:
        edit(next(p for p in experiment.iterdir() if p.name.endswith(where)))
    with pytest.raises(PlateError, match=message):
        discover_fields(plate, channels=DYES)


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=5)
    plate = write_plate(tmp_path / NAME, images)
    (plate / "experiment" / "timepoint0" / "test_data_t0_C02_s1_w0_z0.tif").unlink()
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=DYES)
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["File"], f["Reason"]) for f in failures] == [
        ("C02", "2", "test_data_t0_C02_s1_w0_z0.tif", "file not found")
    ]

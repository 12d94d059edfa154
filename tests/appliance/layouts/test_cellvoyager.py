"""Yokogawa CellVoyager measurements (CV7000, CV8000, CQ3000) as the imagers write them (write_cellvoyager)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields
from tests.appliance.layouts.same_fields import (
    classified_as_bbbc021,
    discovered_with_a_file_gone,
    pixels,
    random_images,
)
from tests.appliance.layouts.write_cellvoyager import write_plate
from tests.conftest import SIZE


def edit(path, change):
    path.write_text(change(path.read_text(encoding="utf-8-sig")), encoding="utf-8")


def test_fields_and_pixels_are_those_written(tmp_path):
    images = random_images()
    plate = write_plate(tmp_path / "CV8000-Screen-1", images)
    assert detect_layout(plate) == "cellvoyager"
    fields, failures = discover_fields(plate)  # targets 405, 488, 561 name no stain: three channels in their order
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout, f.planes, f.source) for f in fields] == [
        ("CV8000-Screen-1", well, site, "cellvoyager", None, "") for well, site in sorted(images)
    ]
    assert [p.name for p in fields[2].paths] == [
        f"AssayPlate_C03_T0001F001L01A{c:02d}Z01C{c:02d}.tif" for c in (1, 2, 3)
    ]
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))


def test_channels_by_number_or_target_in_any_order_beside_others(tmp_path):
    images = random_images(wells=("P24",), sites=(9,))
    plate = write_plate(
        tmp_path / "m", images, channel_numbers=(4, 2, 1), targets=("Hoechst", "488", "561"), extra=("640",)
    )
    with pytest.raises(
        PlateError, match=r"no channel name matches Tubulin, Actin \(the channels are 1 \(561\), 2 \(488\)"
    ):
        discover_fields(plate)
    by_number, _ = discover_fields(plate, channels="DAPI=4,Tubulin=2,Actin=1")
    by_target, _ = discover_fields(plate, channels="Tubulin=488,Actin=561")  # DAPI: Hoechst, by name
    assert by_number == by_target and by_number[0].well == "P24"
    assert np.array_equal(pixels(by_number[0]), np.stack(images["P24", 9]))


def test_planes_time_points_and_the_imagers_own_projection(tmp_path):
    images = random_images(sites=(1,), shape=(2, 3, *SIZE))
    plate = write_plate(tmp_path / "m", images)
    with pytest.raises(PlateError, match=r"m: 2 time points \(1, 2\); choose one with --timepoint N"):
        discover_fields(plate)
    with pytest.raises(PlateError, match=r"m: 3 planes \(1, 2, 3\); choose one with --plane N"):
        discover_fields(plate, timepoint=2)
    fields, _ = discover_fields(plate, timepoint=2, plane=3)
    assert fields[0].paths[1].name == "AssayPlate_B02_T0002F001L01A02Z03C02.tif"
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[1, 2] for a in images[field.well, field.site]]))
    fields, _ = discover_fields(plate, timepoint=1, project="max")
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[0].max(axis=0) for a in images[field.well, field.site]]))

    cq = write_plate(tmp_path / "cq", images, projection=True)  # CQ3000: Projection/W0014F0001T0001Z000C1.tif
    fields, _ = discover_fields(cq / "Projection", timepoint=1)
    assert fields[0].plate == "cq" and fields[0].paths[0] == cq / "Projection" / "W0014F0001T0001Z000C1.tif"
    assert fields[0].source == "timepoint 1"  # plane 0, the imager's projection, the only one
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[0].max(axis=0) for a in images[field.well, field.site]]))


def test_a_channel_acquired_by_two_actions_is_told_apart(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path / "m", images, again=(1,))
    with pytest.raises(PlateError, match=r"L01A01C01 \(405 \(L01A01\)\), L01A04C01 \(405 \(L01A04\)\), 2 \(488\)"):
        discover_fields(plate)
    (field,), _ = discover_fields(plate, channels="DAPI=L01A01C01,Tubulin=2,Actin=3")
    assert field.paths[0].name == "AssayPlate_B02_T0001F001L01A01Z01C01.tif"
    assert np.array_equal(pixels(field), np.stack(images["B02", 1]))
    (field,), _ = discover_fields(plate, channels="DAPI=405 (L01A04),Tubulin=2,Actin=3")
    assert field.paths[0].name == "AssayPlate_B02_T0001F001L01A04Z01C01.tif"


def test_acquisition_error_missing_channel_absent_file_and_path_outside(tmp_path):
    plate = write_plate(tmp_path / "m", random_images(wells=("B02", "C03", "D04"), sites=(1,)), errors=("N09",))
    mlf = plate / "MeasurementData.mlf"
    edit(
        mlf,
        lambda text: re.sub(r"<bts:MeasurementRecord [^\n]*>AssayPlate_B02_T0001F001L01A02Z01C02.tif<.*\n", "", text),
    )
    edit(mlf, lambda text: text.replace(">AssayPlate_C03_T0001F001L01A03Z01C03.tif<", ">../elsewhere/C03.tif<"))
    (plate / "AssayPlate_D04_T0001F001L01A01Z01C01.tif").unlink()
    fields, failures = discovered_with_a_file_gone(plate, None, "AssayPlate_D04_T0001F001L01A01Z01C01.tif")
    assert [f.well for f in fields] == ["D04"]
    assert [(f.well, f.site, f.file) for f in failures] == [
        ("B02", 1, "AssayPlate_B02_T0001F001L01A01Z01C01.tif; AssayPlate_B02_T0001F001L01A03Z01C03.tif"),
        ("C03", 1, "AssayPlate_C03_T0001F001L01A01Z01C01.tif; AssayPlate_C03_T0001F001L01A02Z01C02.tif; C03.tif"),
        ("N09", 0, "MeasurementData.mlf"),
    ]
    assert failures[0].reason == "missing channel Tubulin (2: 488)"
    assert re.fullmatch(r".*elsewhere/C03\.tif: outside the plate folder .*/m; refused", failures[1].reason)
    assert failures[2].reason == (
        "the imager reports an acquisition error and no image: AF Error at N09 No. 0 (SAMPLE_PLATE_000000_000000)"
    )


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "MeasurementData.mlf",
            lambda t: t[: len(t) // 2],
            r"MeasurementData.mlf: a CellVoyager measurement list is not",
        ),
        (
            "MeasurementData.mlf",
            lambda t: t.replace(' bts:FieldIndex="2"', "", 1),
            r"IMG record 4 \(AssayPlate_B02_T0001F002L01A01Z01C01.tif\): no FieldIndex",
        ),
        (
            "MeasurementData.mlf",
            lambda t: t.replace('bts:Ch="3"', 'bts:Ch="C3"', 1),
            r"IMG record 3 .*: Ch 'C3' is not a whole number",
        ),
        (
            "MeasurementData.mlf",
            lambda t: t.replace('bts:Row="2"', 'bts:Row="0"', 1),
            r"IMG record 1 .*: no well at row 0, column 2",
        ),
        (
            "MeasurementDetail.mrf",
            lambda t: t.replace("/>", ">", 1),
            r"MeasurementDetail.mrf: a CellVoyager measurement detail is not",
        ),
        ("AssayProtocol.mes", lambda t: t + "<more/>", r"AssayProtocol.mes: a CellVoyager measurement setting is not"),
    ],
)
def test_a_bad_file_is_a_plate_error_naming_it(tmp_path, file, change, message):
    plate = write_plate(tmp_path / "m", random_images())
    edit(plate / file, change)
    assert detect_layout(plate) == "cellvoyager"
    with pytest.raises(PlateError, match=message):
        discover_fields(plate)


def test_tolerated_a_trailing_bracket_no_mrf_no_mes(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path / "m", images, channel_numbers=(3, 2, 1), targets=("DAPI", "Tubulin", "Actin"))
    edit(plate / "MeasurementData.mlf", lambda text: text.rstrip("\n") + ">\n")  # '>>': a known corruption
    (plate / "MeasurementDetail.mrf").unlink()  # the folder's only .mes names the channels
    (field,), _ = discover_fields(plate)
    assert np.array_equal(pixels(field), np.stack(images["B02", 1]))
    (plate / "AssayProtocol.mes").unlink()  # numbers only: three channels in their order
    (field,), _ = discover_fields(plate)
    assert [p.name[-7:] for p in field.paths] == ["C01.tif", "C02.tif", "C03.tif"]


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=5)
    plate = write_plate(tmp_path / "plate", images, errors=("H12",))
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path)
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["File"]) for f in failures] == [
        ("H12", "0", "MeasurementData.mlf")
    ]

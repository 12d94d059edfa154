"""IN Cell Analyzer plates (.xdce index, `B - 2(fld 1 wv DAPI - DAPI).tif` images) as write_incell lays them out."""

from __future__ import annotations

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
from tests.appliance.layouts.write_incell import write_plate
from tests.conftest import SIZE
from tests.conftest import write_plate as write_bbbc021_plate

DYES = "Tubulin=FITC - FITC,Actin=TexasRed - TexasRed"  # IN Cell names channels by filter: only DAPI says which


def xdce(plate: Path) -> Path:
    return next(plate.glob("*.xdce"))


def edit_index(plate: Path, edit) -> Path:
    index = xdce(plate)
    index.write_bytes(edit(index.read_bytes().decode("iso-8859-1")).encode("iso-8859-1"))
    return index


def test_fields_and_pixels_are_those_written(tmp_path):
    images = random_images()
    plate = write_plate(tmp_path / "Plate 12 (IN Cell 2000)", images)
    assert detect_layout(plate) == "incell"
    fields, failures = discover_fields(plate, channels=DYES)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout, f.planes, f.source) for f in fields] == [
        ("Plate 12 (IN Cell 2000)", well, site, "incell", None, "") for well, site in sorted(images)
    ]
    assert [p.name for p in fields[3].paths] == [
        "C - 3(fld 2 wv DAPI - DAPI).tif",
        "C - 3(fld 2 wv FITC - FITC).tif",
        "C - 3(fld 2 wv TexasRed - TexasRed).tif",
    ]
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))


def test_channels_by_filter_name_or_wave_index_in_any_order(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    # Actin imaged first, then a channel the model does not take, then Tubulin, then DAPI
    filters = (("UV", "Blue"), ("Green", "dsRed"), ("Blue", "Green"))
    plate = write_plate(tmp_path / "plate", images, filters=filters, extra=(("Red", "FarRed"),))
    with pytest.raises(PlateError, match=r"no channel name matches DAPI, Tubulin, Actin.*0 \(UV - Blue\)"):
        discover_fields(plate)  # four channels, no telling names: the user says which
    by_name, _ = discover_fields(plate, channels="DAPI=uv - blue,Tubulin=Green - dsRed,Actin=Blue - Green")
    by_index, _ = discover_fields(plate, channels="DAPI=0,Tubulin=1,Actin=2")
    assert by_name == by_index and np.array_equal(pixels(by_name[0]), np.stack(images["B02", 1]))
    with pytest.raises(PlateError, match=r"Actin='Cy5 - Cy5': no channel\(s\) of that id or name"):
        discover_fields(plate, channels="DAPI=0,Tubulin=1,Actin=Cy5 - Cy5")


def test_telling_names_need_no_option_and_fusion_waves_are_no_channels(tmp_path):
    images = random_images(wells=("D04",), sites=(3,))
    filters = (("DAPI", "Hoechst"), ("FITC", "Tubulin-488"), ("Cy3", "Phalloidin-568"))
    plate = write_plate(tmp_path / "plate", images, filters=filters, fusion=True)
    (field,), failures = discover_fields(plate)
    assert failures == [] and (field.well, field.site) == ("D04", 3)
    assert np.array_equal(pixels(field), np.stack(images["D04", 3]))


def test_channels_named_by_the_images_filters_when_the_protocol_lists_no_wavelengths(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path / "plate", images, wavelengths=False)
    (field,), _ = discover_fields(plate, channels=DYES)
    assert np.array_equal(pixels(field), np.stack(images["B02", 1]))


def test_several_planes_need_a_plane_or_a_projection(tmp_path):
    images = random_images(wells=("B02", "C03"), sites=(1,), shape=(3, *SIZE))
    plate = write_plate(tmp_path / "plate", images)
    assert "B - 2(fld 1 wv DAPI - DAPI z 3).tif" in {p.name for p in plate.iterdir()}
    with pytest.raises(PlateError, match=r"3 planes \(0, 1, 2\); choose one with --plane N, or project"):
        discover_fields(plate, channels=DYES)
    for plane in range(3):  # the z_index of the index, from 0
        fields, failures = discover_fields(plate, channels=DYES, plane=plane)
        assert failures == [] and fields[0].source == f"plane {plane}"
        for field in fields:
            assert np.array_equal(pixels(field), np.stack([a[plane] for a in images[field.well, field.site]]))
    with pytest.raises(PlateError, match="--plane 3: the plate has planes 0, 1, 2"):
        discover_fields(plate, channels=DYES, plane=3)
    fields, _ = discover_fields(plate, channels=DYES, project="max")
    assert fields[0].source == "max projection of 3 planes"
    for field in fields:
        want = np.stack([np.maximum(np.maximum(a[0], a[1]), a[2]) for a in images[field.well, field.site]])
        assert np.array_equal(pixels(field), want)


def test_several_time_points_need_a_time_point(tmp_path):
    images = random_images(wells=("B02",), sites=(1, 2), shape=(2, 1, *SIZE))
    plate = write_plate(tmp_path / "plate", images)
    assert "B - 2(fld 2 wv FITC - FITC - time 2 - 60000 ms).tif" in {p.name for p in plate.iterdir()}
    with pytest.raises(PlateError, match=r"2 time points \(0, 1\); choose one with --timepoint N"):
        discover_fields(plate, channels=DYES)
    fields, _ = discover_fields(plate, channels=DYES, timepoint=1)
    assert [f.source for f in fields] == ["timepoint 1"] * 2
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[1, 0] for a in images[field.well, field.site]]))


def test_missing_outside_and_raw_images(tmp_path):
    images = random_images(wells=("B02", "B03", "C02", "C03"), sites=(1,))
    plate = write_plate(tmp_path / "screen" / "plate", images)
    (plate / "B - 2(fld 1 wv FITC - FITC).tif").unlink()  # listed, absent: found now, fails when read
    tifffile.imwrite(tmp_path / "screen" / "elsewhere.tif", images["B03", 1][1])
    edit_index(
        plate,
        lambda text: re.sub(  # C03's Actin image not listed at all
            r'\s*<Image filename="C - 3\(fld 1 wv TexasRed - TexasRed\)\.tif".*?</Image>',
            "",
            text.replace('"B - 3(fld 1 wv FITC - FITC).tif"', '"../elsewhere.tif"').replace(
                '"C - 2(fld 1 wv TexasRed - TexasRed).tif"', '"C - 2(fld 1 wv TexasRed - TexasRed).im"'
            ),
            flags=re.S,
        ),
    )
    fields, failures = discovered_with_a_file_gone(plate, DYES, "B - 2(fld 1 wv FITC - FITC).tif")
    assert [f.well for f in fields] == ["B02"]
    reasons = {f.well: f.reason for f in failures}
    assert re.fullmatch(r".*elsewhere\.tif: outside the plate folder .*plate; refused", reasons["B03"])
    assert reasons["C02"] == "raw .im images are not supported"
    assert reasons["C03"] == "missing channel Actin (2: TexasRed - TexasRed)"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text[: len(text) // 2], "an IN Cell index is not readable XML"),
        (lambda text: text.replace("<ImageStack>", "<Stack>").replace("</ImageStack>", "</Stack>"), "its root"),
        (
            lambda text: text.replace(' field_index="1"', "", 1),
            r"image 4 \(B - 2\(fld 2 wv DAPI - DAPI\)\.tif\): no field_index",
        ),
        (lambda text: text.replace('<Row number="3"/>', '<Row number="C"/>', 1), "Row number 'C' is not a whole"),
        (lambda text: text.replace('filename="B - 2(fld 1 wv DAPI - DAPI).tif" ', "", 1), "image 1: no filename"),
    ],
)
def test_a_bad_index_is_a_plate_error_naming_it(tmp_path, edit, message):
    plate = write_plate(tmp_path / "plate", random_images())
    index = edit_index(plate, edit)
    with pytest.raises(PlateError, match=f"{re.escape(str(index))}: .*{message}"):
        discover_fields(plate, channels=DYES)


def test_detection_a_folder_of_plates_and_a_plate_without_its_index(tmp_path):
    screen = tmp_path / "screen"
    plates = [write_plate(screen / name, random_images(sites=(1,)), index_name="run") for name in ("P1", "P2")]
    write_bbbc021_plate(screen / "P3", wells=("B02",), sites=(1,))
    assert [detect_layout(p) for p in plates] == ["incell", "incell"] and detect_layout(screen / "P3") == "bbbc021"
    assert plate_folders([screen]) == [*plates, screen / "P3"]
    assert plate_folders([plates[0]]) == [plates[0]]
    xdce(plates[1]).unlink()  # IN Cell images alone still say IN Cell, and that the index is missing
    assert detect_layout(plates[1]) == "incell"
    with pytest.raises(PlateError, match=r"P2: no IN Cell index \(\*\.xdce\)"):
        discover_fields(plates[1])
    write_plate(plates[0], random_images(sites=(1,)), index_name="rescan")
    with pytest.raises(PlateError, match=r"2 IN Cell indexes \(rescan\.xdce, run\.xdce\); one plate per folder"):
        discover_fields(plates[0])


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=3)
    plate = write_plate(tmp_path / "plate", images)
    (plate / "C - 2(fld 2 wv FITC - FITC).tif").unlink()  # listed, absent: that field fails, the rest go on
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=DYES)
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["File"], f["Reason"]) for f in failures] == [
        ("C02", "2", "C - 2(fld 2 wv FITC - FITC).tif", "file not found")
    ]

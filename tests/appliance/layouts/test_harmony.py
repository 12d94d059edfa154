"""Harmony plates (Operetta, Opera Phenix) as Harmony V5, V6 and V7 export them (write_harmony)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields
from tests.appliance.layouts.same_fields import (
    check_planes,
    classified_as_bbbc021,
    discovered_with_a_file_gone,
    pixels,
    random_images,
)
from tests.appliance.layouts.write_harmony import write_plate
from tests.conftest import SIZE

VERSIONS = ("V5", "V6", "V7")
DYES = "Tubulin=Alexa 488,Actin=Alexa 568"  # Harmony names channels by dye: only HOECHST says which it is


def index_of(plate: Path) -> Path:
    return next(
        p for name in ("Index.idx.xml", "Index.xml") for p in (plate / "Images" / name, plate / name) if p.is_file()
    )


def edit_index(plate: Path, edit) -> Path:
    """Rewrite the plate's index through edit(text) -> text; returns the index."""
    index = index_of(plate)
    index.write_text(edit(index.read_text(encoding="utf-8-sig")), encoding="utf-8-sig")
    return index


def drop_record(url: str):
    """An edit removing the <Image> record of one file."""
    return lambda text: re.sub(
        rf'    <Image Version="1">\n(?:(?!</Image>).)*<URL>{re.escape(url)}</URL>.*?</Image>\n', "", text, flags=re.S
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_fields_and_pixels_are_those_written(tmp_path, version):
    images = random_images()
    plate = write_plate(tmp_path / "QB-2024-11-01-Measurement 1", images, version=version)
    assert detect_layout(plate) == "harmony" and detect_layout(plate / "Images") == "harmony"
    fields, failures = discover_fields(plate, channels=DYES)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout, f.planes, f.source) for f in fields] == [
        ("QB-2024-11-01-Measurement 1", well, site, "harmony", None, "") for well, site in sorted(images)
    ]
    assert fields[2].paths == tuple(plate / "Images" / f"r03c03f01p01-ch{c}sk1fk1fl1.tiff" for c in (1, 2, 3))
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))
    # the Images folder given: the same plate, named after the plate folder
    assert discover_fields(plate / "Images", channels=DYES) == (fields, [])


def test_channels_recognised_by_name_need_no_option(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    names = ("HOECHST 33342", "beta-Tubulin (Alexa 488)", "Phalloidin Alexa 568")
    plate = write_plate(tmp_path / "plate", images, version="V7", names=names)
    (field,), _ = discover_fields(plate)
    assert np.array_equal(pixels(field), np.stack(images["B02", 1]))


def test_dye_names_alone_ask_for_the_channels(tmp_path):
    plate = write_plate(tmp_path / "plate", random_images(), version="V5")
    with pytest.raises(PlateError, match=r"no channel name matches Tubulin, Actin .*2 \(Alexa 488\).*--channels"):
        discover_fields(plate)


@pytest.mark.parametrize("version", ("V5", "V7"))
def test_channels_by_id_or_by_name_in_any_order_beside_another_channel(tmp_path, version):
    images = random_images(wells=("D04",), sites=(3,))
    plate = write_plate(tmp_path / "plate", images, version=version, channel_ids=(3, 1, 2), extra=("Alexa 647",))
    want = np.stack(images["D04", 3])
    by_id, _ = discover_fields(plate, channels="DAPI=3,Tubulin=1,Actin=2")
    by_name, _ = discover_fields(plate, channels="dapi=hoechst 33342,Tubulin=ALEXA 488,Actin=Alexa 568")
    assert by_id == by_name and by_id[0].paths[0].name == "r04c04f03p01-ch3sk1fk1fl1.tiff"
    assert np.array_equal(pixels(by_id[0]), want)
    with pytest.raises(PlateError, match=r"Actin='Alexa 594': no channel.*4 \(Alexa 647\)"):
        discover_fields(plate, channels="Tubulin=Alexa 488,Actin=Alexa 594")


def test_planes_refused_unless_one_is_chosen_or_projected(tmp_path):
    images = random_images(shape=(3, *SIZE))
    plate = write_plate(tmp_path / "plate", images, version="V5")
    check_planes(plate, images, DYES, (1, 2, 3))


@pytest.mark.parametrize(("version", "timepoints"), [("V5", (0, 1)), ("V7", (1, 2))])
def test_time_points_refused_unless_one_is_chosen(tmp_path, version, timepoints):
    """TimepointID counts from 0 in Harmony V5 indexes and from 1 in V7 ones; --timepoint takes the index's number."""
    images = random_images(shape=(2, 1, *SIZE))
    plate = write_plate(tmp_path / "plate", images, version=version)
    listed = ", ".join(map(str, timepoints))
    with pytest.raises(PlateError, match=rf"2 time points \({listed}\); choose one with --timepoint N"):
        discover_fields(plate, channels=DYES)
    fields, _ = discover_fields(plate, channels=DYES, timepoint=timepoints[1])
    assert fields[0].paths[0].name == "r02c02f01p01-ch1sk2fk1fl1.tiff"
    assert fields[0].source == f"timepoint {timepoints[1]}"
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[1, 0] for a in images[field.well, field.site]]))


def test_index_in_the_plate_folder_and_no_bom(tmp_path):
    """Harmony 7 may keep the index beside the Images folder, its URLs leading into it."""
    images = random_images(wells=("H12",), sites=(1,))
    plate = write_plate(tmp_path / "plate", images, version="V7", index_in_plate_folder=True)
    index = plate / "Index.xml"
    index.write_bytes(index.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    assert detect_layout(plate) == "harmony"
    (field,), _ = discover_fields(plate / "Images", channels=DYES)
    assert field.plate == "plate" and field.paths[0] == plate / "Images" / "r08c12f01p01-ch1sk1fk1fl1.tiff"
    assert np.array_equal(pixels(field), np.stack(images["H12", 1]))


def test_index_ref_xml_in_a_lowercase_images_folder(tmp_path):
    """Bio-Formats also reads Index.ref.xml; pe2loaddata's Harmony samples keep their images in `images/`."""
    images = random_images(wells=("A01",), sites=(2,))
    plate = write_plate(tmp_path / "plate", images, version="V5")
    (plate / "Images" / "Index.idx.xml").rename(plate / "Images" / "Index.ref.xml")
    (plate / "Images").rename(plate / "images")
    assert detect_layout(plate) == "harmony"
    (field,), _ = discover_fields(plate, channels=DYES)
    assert field.paths[2] == plate / "images" / "r01c01f02p01-ch3sk1fk1fl1.tiff"
    assert np.array_equal(pixels(field), np.stack(images["A01", 2]))


def test_missing_channel_absent_file_and_path_outside_the_plate(tmp_path):
    plate = write_plate(tmp_path / "plate", random_images(wells=("B02", "C03", "D04"), sites=(1,)), version="V5")
    edit_index(plate, drop_record("r02c02f01p01-ch2sk1fk1fl1.tiff"))
    (tmp_path / "outside.tiff").write_bytes((plate / "Images" / "r03c03f01p01-ch3sk1fk1fl1.tiff").read_bytes())
    edit_index(plate, lambda text: text.replace("r03c03f01p01-ch3sk1fk1fl1.tiff", "../../outside.tiff"))
    (plate / "Images" / "r04c04f01p01-ch1sk1fk1fl1.tiff").unlink()
    fields, failures = discovered_with_a_file_gone(plate, DYES, "r04c04f01p01-ch1sk1fk1fl1.tiff")
    assert [f.well for f in fields] == ["D04"]
    assert [(f.well, f.site) for f in failures] == [("B02", 1), ("C03", 1)]
    assert failures[0].reason == "missing channel Tubulin (2: Alexa 488)"
    assert "r02c02f01p01-ch1sk1fk1fl1.tiff" in failures[0].file
    assert re.fullmatch(r".*outside\.tiff: outside the plate folder .*plate; refused", failures[1].reason)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[: len(text) // 2], r"Index.idx.xml: a Harmony index is not readable XML \(.*line \d+"),
        (
            lambda text: text.replace("<FieldID>2</FieldID>", "", 1),
            r"Index.idx.xml: image record 4 \(0202K1F2P1R1\): no FieldID",
        ),
        (
            lambda text: text.replace("<Row>3</Row>", "<Row>C</Row>"),
            r"image record 7 \(0303K1F1P1R1\): Row 'C' is not a whole",
        ),
        (
            lambda text: text.replace("<URL>r02c02f02p01-ch3sk1fk1fl1.tiff</URL>", ""),
            r"record 6 \(0202K1F2P1R3\): no URL",
        ),
        (
            lambda text: text.replace("EvaluationInputData", "Evaluation"),
            r"not a Harmony index \(its root element is <Evaluation>",
        ),
        (
            lambda text: re.sub(r"  <Images>.*</Images>\n", "", text, flags=re.S),
            r"Index.idx.xml: the Harmony index lists no images",
        ),
    ],
)
def test_a_bad_index_is_a_plate_error_naming_it(tmp_path, edit, message):
    plate = write_plate(tmp_path / "plate", random_images(), version="V5")
    edit_index(plate, edit)
    assert detect_layout(plate) == "harmony"
    with pytest.raises(PlateError, match=message):
        discover_fields(plate, channels=DYES)


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=3)
    plate = write_plate(tmp_path / "plate", images, version="V7")
    (plate / "Images" / "r03c02f02p01-ch2sk1fk1fl1.tiff").unlink()  # listed, absent: that field fails, the rest go on
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=DYES)
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["File"]) for f in failures] == [
        ("C02", "2", "r03c02f02p01-ch2sk1fk1fl1.tiff")
    ]
    assert failures[0]["Reason"] == "file not found"

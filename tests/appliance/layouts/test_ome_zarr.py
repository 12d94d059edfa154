"""OME-Zarr plates (NGFF 0.4 on Zarr v2, 0.5 on Zarr v3) written by ome-zarr-py: detection, the
fields found, the pixels read, channels, planes, time points, what is missing or broken, and one
classify run that must predict what the same pixels as a BBBC021 plate predict."""

import json
import shutil

import numpy as np
import pytest
import zarr

from appliance.imageio import FieldError
from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields
from tests.appliance.layouts.same_fields import classified_as_bbbc021, pixels, random_images
from tests.appliance.layouts.write_ome_zarr import write_plate
from tests.conftest import SIZE

VERSIONS = ("0.4", "0.5")
NAMED = "Tubulin=Alexa 488,Actin=Alexa 568"  # HOECHST 33342 is DAPI by its name; the Alexa dyes are not named


def dataset0(image) -> str:
    """The path of the full-resolution array, as zarr-python reads the image's metadata."""
    attrs = zarr.open_group(str(image), mode="r").attrs.asdict()
    return attrs.get("ome", attrs)["multiscales"][0]["datasets"][0]["path"]


def edit_ngff(group, change):
    """Change a group's NGFF attributes in place (0.5 keeps them under "ome"), as a hand edit would."""
    node = zarr.open_group(str(group), mode="r+")
    attrs = node.attrs.asdict()
    change(attrs.get("ome", attrs))
    node.attrs.put(attrs)


@pytest.mark.parametrize("version", VERSIONS)
def test_fields_and_pixels_as_written(tmp_path, version):
    images = random_images()
    plate = write_plate(tmp_path, images, version=version, levels=3)
    if version == "0.4":  # the real writer wrote the version asked for
        assert (plate / ".zattrs").is_file() and not (plate / "zarr.json").exists()
        assert json.loads((plate / ".zattrs").read_text())["plate"]["version"] == "0.4"
    else:
        assert json.loads((plate / "zarr.json").read_text())["attributes"]["ome"]["version"] == "0.5"
    assert detect_layout(plate) == "ome-zarr"
    fields, failures = discover_fields(plate, channels=NAMED)
    assert failures == []
    assert [(f.plate, f.well, f.site) for f in fields] == [("plate.zarr", w, s) for w, s in images]
    for f in fields:
        image = plate / f.well[0] / str(int(f.well[1:])) / str(f.site - 1)  # C03 site 2 -> C/3/1
        assert f.paths == (image / dataset0(image),) * 3 and f.planes == (0, 1, 2)
        assert f.layout == "ome-zarr" and f.stack is None and f.source == ""
        np.testing.assert_array_equal(pixels(f), np.stack(images[f.well, f.site]))  # bit for bit, level 0


@pytest.mark.parametrize("version", VERSIONS)
def test_channels_by_id_and_by_name(tmp_path, version):
    images = random_images(wells=("B02",), sites=(1,))
    bright = {"Brightfield": np.full(SIZE, 7, np.uint16)}
    plate = write_plate(tmp_path, images, version=version, extra_channels=bright)
    want = np.stack(images["B02", 1])
    for channels in ("DAPI=1,Tubulin=2,Actin=3", "dapi=hoechst 33342,Tubulin=ALEXA 488,Actin=Alexa 568", NAMED):
        (field,), _ = discover_fields(plate, channels=channels)
        assert field.planes == (1, 2, 3)
        np.testing.assert_array_equal(pixels(field), want)
    (field,), _ = discover_fields(plate, channels="DAPI=0,Tubulin=2,Actin=3")
    assert field.planes == (0, 2, 3) and (pixels(field)[0] == 7).all()
    with pytest.raises(PlateError, match=r"no channel name matches Tubulin, Actin.*2 \(Alexa 488\)"):
        discover_fields(plate)


def test_channel_names_that_say_what_they_stain_need_no_channels_option(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path, images, labels=("DAPI", "beta-Tubulin", "Phalloidin-Actin"))
    (field,), _ = discover_fields(plate)
    np.testing.assert_array_equal(pixels(field), np.stack(images["B02", 1]))


@pytest.mark.parametrize("version", VERSIONS)
def test_z_planes_one_or_projected(tmp_path, version):
    images = random_images(wells=("B02",), sites=(1,), shape=(3, *SIZE))  # czyx
    plate = write_plate(tmp_path, images, version=version)
    with pytest.raises(PlateError, match=r"3 planes \(0, 1, 2\); choose one with --plane N.*--project max"):
        discover_fields(plate, channels=NAMED)
    (field,), _ = discover_fields(plate, channels=NAMED, plane=1)
    assert field.planes == (1, 4, 7) and field.source == "plane 1"  # channel c, plane z: c * 3 + z
    np.testing.assert_array_equal(pixels(field), np.stack([a[1] for a in images["B02", 1]]))
    (field,), _ = discover_fields(plate, channels=NAMED, project="max")
    assert field.source == "max projection of 3 planes"
    assert field.stack[2] == tuple((field.paths[2], 6 + z) for z in range(3))
    np.testing.assert_array_equal(pixels(field), np.stack([a.max(axis=0) for a in images["B02", 1]]))
    with pytest.raises(PlateError, match="--plane 3: the plate has planes 0, 1, 2"):
        discover_fields(plate, channels=NAMED, plane=3)


@pytest.mark.parametrize("version", VERSIONS)
def test_time_points(tmp_path, version):
    images = random_images(wells=("B02",), sites=(1,), shape=(2, 1, *SIZE))  # tczyx, one plane
    plate = write_plate(tmp_path, images, version=version)
    with pytest.raises(PlateError, match=r"2 time points \(0, 1\); choose one with --timepoint N"):
        discover_fields(plate, channels=NAMED)
    (field,), _ = discover_fields(plate, channels=NAMED, timepoint=1)
    assert field.planes == (3, 4, 5) and field.source == "timepoint 1"
    np.testing.assert_array_equal(pixels(field), np.stack([a[1, 0] for a in images["B02", 1]]))


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_image_array_or_pixels(tmp_path, version):
    plate = write_plate(tmp_path, random_images(wells=("B02", "B03", "C02", "C03")), version=version)
    shutil.rmtree(plate / "B/2/1")  # an image the well lists
    shutil.rmtree(plate / "B/3/0" / dataset0(plate / "B/3/0"))  # the full-resolution array
    shutil.rmtree(plate / "C/2")  # a well the plate lists
    array = plate / "C/3/1" / dataset0(plate / "C/3/1")
    for chunks in array.iterdir():  # the metadata is there, the chunks are not: a copy cut short
        if chunks.is_dir():
            shutil.rmtree(chunks)
    fields, failures = discover_fields(plate, channels=NAMED)
    assert [(f.well, f.site, f.file) for f in failures] == [("B02", 2, "B/2/1"), ("B03", 1, "B/3/0"), ("C02", 0, "C/2")]
    assert "B/2/1: not on disk" in failures[0].reason
    assert "no Zarr array there" in failures[1].reason
    assert "C/2: not on disk" in failures[2].reason
    assert [(f.well, f.site) for f in fields] == [("B02", 1), ("B03", 2), ("C03", 1), ("C03", 2)]
    with pytest.raises(FieldError, match="no pixel data stored for plane \\[0\\].*chunk files are missing") as error:
        pixels(fields[-1])
    assert error.value.path == str(array)


@pytest.mark.parametrize("version", VERSIONS)
def test_paths_outside_the_plate_are_refused(tmp_path, version):
    plate = write_plate(tmp_path / "in", random_images(wells=("B02", "B03")), version=version)
    elsewhere = write_plate(tmp_path / "out", random_images(wells=("B02",), sites=(1,)), version=version)
    edit_ngff(
        plate / "B/2/0", lambda a: a["multiscales"][0]["datasets"][0].update(path="../../../../out/plate.zarr/B/2/0/s0")
    )
    edit_ngff(plate / "B/2", lambda a: a["well"]["images"][1].update(path="../../../../out/plate.zarr/B/2/0"))
    edit_ngff(plate, lambda a: a["plate"]["wells"][1].update(path="../out/plate.zarr/B/2"))
    assert (elsewhere / "B/2/0").is_dir()
    fields, failures = discover_fields(plate, channels=NAMED)
    assert fields == [] and len(failures) == 3
    assert all("outside the plate folder" in f.reason and "refused" in f.reason for f in failures)


@pytest.mark.parametrize("version", VERSIONS)
def test_unreadable_plate_metadata_names_the_file(tmp_path, version):
    plate = write_plate(tmp_path, random_images(wells=("B02",), sites=(1,)), version=version)
    document = plate / (".zattrs" if version == "0.4" else "zarr.json")
    document.write_text('{"plate": {"wells": [')
    assert detect_layout(plate) == "ome-zarr"  # a *.zarr folder: discover says what is wrong
    with pytest.raises(PlateError, match=f"{document}: Zarr metadata is not readable JSON"):
        discover_fields(plate)
    document.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"ome": {"plate": {}}}}))
    if version == "0.5":
        with pytest.raises(PlateError, match=f"{document}: the plate metadata has no list of wells"):
            discover_fields(plate)


def test_an_unreadable_image_or_other_channels_is_that_fields_failure(tmp_path):
    plate = write_plate(tmp_path, random_images(wells=("B02",), sites=(1, 2, 3)))
    (plate / "B/2/1/zarr.json").write_text("not json")
    edit_ngff(plate / "B/2/2", lambda a: a["omero"]["channels"][1].update(label="GFP"))
    fields, failures = discover_fields(plate, channels="DAPI=0,Tubulin=1,Actin=2")
    assert [f.site for f in fields] == [1] and [(f.site, f.file) for f in failures] == [(2, "B/2/1"), (3, "B/2/2")]
    assert f"{plate / 'B/2/1/zarr.json'}: Zarr metadata is not readable JSON" in failures[0].reason
    assert failures[1].reason.endswith(
        "channels ['HOECHST 33342', 'GFP', 'Alexa 568'] differ from the plate's first image's "
        "['HOECHST 33342', 'Alexa 488', 'Alexa 568']"
    )


def test_classify_predicts_what_the_same_pixels_as_tiffs_predict(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"))
    plate = write_plate(tmp_path / "zarr", images, version="0.4")
    array = plate / "C/2/1" / dataset0(plate / "C/2/1")
    for chunks in array.iterdir():  # one field without pixels: a failure, and the others go on
        if chunks.is_dir():
            shutil.rmtree(chunks)
    (failure,) = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=NAMED)
    assert (failure["Metadata_Well"], failure["Metadata_Site"]) == ("C02", "2")
    assert "no pixel data stored" in failure["Reason"]

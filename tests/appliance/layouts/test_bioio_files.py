"""CZI / ND2 / LIF multi-position plates (appliance.layouts.bioio_files), tested with CZI files pylibCZIrw writes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from appliance.imageio import FieldError, read_plate_field
from appliance.layouts import bioio_files
from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields, plate_folders
from tests.appliance.layouts.same_fields import check_planes, classified_as_bbbc021, pixels, random_images
from tests.conftest import SIZE

DYES = "Tubulin=Alexa 488,Actin=Alexa 568"  # HOECHST is found as DAPI by its name
extra = pytest.mark.skipif(
    importlib.util.find_spec("bioio_czi") is None or importlib.util.find_spec("pylibCZIrw") is None,
    reason="the [formats] extra (bioio, bioio-czi with pylibCZIrw) is not installed",
)


def test_without_the_extra_the_plate_is_refused_naming_the_file_and_the_extra(tmp_path, monkeypatch):
    plate = tmp_path / "P1"
    plate.mkdir()
    (plate / "plate.nd2").write_bytes(b"not read")
    (tmp_path / "P1" / "notes.txt").write_text("")
    real = importlib.util.find_spec
    monkeypatch.setattr(bioio_files, "find_spec", lambda name: None if name.startswith("bioio") else real(name))
    assert detect_layout(plate) == "bioio"
    assert plate_folders([tmp_path]) == [plate]
    code = f"import sys; from appliance.plate import detect_layout as d; d({str(plate)!r}); print(list(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {"bioio", "bioio_nd2", "pylibCZIrw"} & set(eval(loaded))  # detection imports none of the extra
    with pytest.raises(PlateError, match=r"plate\.nd2: reading \.nd2 files needs the \[formats\] extra .*") as info:
        discover_fields(plate)
    assert "pip install 'mcnn-appliance[formats]'" in str(info.value)


def test_pack_and_wells():
    assert bioio_files.unpack(bioio_files.pack(3, 2, 1, 5)) == (3, 2, 1, 5)
    assert bioio_files.well_of("1", "4", 0) == "B05"  # CZI: counted from 0
    assert bioio_files.well_of("2", "12", 1) == "B12"  # ND2: counted from 1
    assert bioio_files.well_of("C", "3", 1) == "C03"
    assert bioio_files.well_of(None, "3", 1) is None


@extra
def test_fields_and_pixels_are_those_written(tmp_path):
    from tests.appliance.layouts.write_czi import write_plate

    images = random_images(wells=("B02", "C05"), sites=(1, 2))
    plate = write_plate(tmp_path / "P1", images, no_well=1)
    assert detect_layout(plate) == "bioio"
    fields, failures = discover_fields(plate, channels=DYES)
    assert [(f.well, f.site) for f in fields] == sorted(images)
    assert {f.layout for f in fields} == {"bioio"}
    assert all(f.paths == (plate / "plate.czi",) * 3 for f in fields)
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))
    assert [(f.file, f.reason) for f in failures] == [
        ("plate.czi scene P1", "the file does not say which well position 4 (P1) is in")
    ]


@extra
def test_channels_by_name_or_index(tmp_path):
    from tests.appliance.layouts.write_czi import write_plate

    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path / "P1", images, names=("Actin", "Nuclei", "Microtubules"))
    with pytest.raises(PlateError, match="no channel name matches DAPI, Tubulin"):
        discover_fields(plate)
    first, second, third = images["B02", 1]  # written as channels 0 (Actin), 1 (Nuclei), 2 (Microtubules)
    for channels in ("DAPI=nuclei,Tubulin=MICROTUBULES", "DAPI=1,Tubulin=2,Actin=0"):
        fields, _ = discover_fields(plate, channels=channels)
        assert np.array_equal(pixels(fields[0]), np.stack([second, third, first]))


@extra
def test_several_planes_and_time_points(tmp_path):
    from tests.appliance.layouts.write_czi import write_plate

    images = random_images(wells=("B02",), sites=(1, 2), shape=(2, *SIZE))
    plate = write_plate(tmp_path / "Z", images)
    check_planes(plate, images, DYES, (1, 2))
    images = random_images(wells=("B02",), sites=(1,), shape=(2, 1, *SIZE))
    plate = write_plate(tmp_path / "T", images)
    with pytest.raises(PlateError, match=r"2 time points \(1, 2\); choose one with --timepoint N"):
        discover_fields(plate, channels=DYES)
    for t in (1, 2):
        fields, _ = discover_fields(plate, channels=DYES, timepoint=t)
        assert np.array_equal(pixels(fields[0]), np.stack([a[t - 1, 0] for a in images["B02", 1]]))


@extra
def test_a_damaged_or_missing_file(tmp_path):
    from tests.appliance.layouts.write_czi import write_plate

    plate = write_plate(tmp_path / "P1", random_images(wells=("B02",), sites=(1,)))
    fields, _ = discover_fields(plate, channels=DYES)
    (plate / "plate.czi").rename(plate / "moved.czi")
    with pytest.raises(FieldError, match=r"plate\.czi: file not found"):
        read_plate_field(fields[0], SIZE)
    (plate / "moved.czi").write_bytes(b"ZISRAWFILE damaged")
    with pytest.raises(PlateError, match=r"moved\.czi: unreadable"):
        discover_fields(plate)


@extra
def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    from tests.appliance.layouts.write_czi import write_plate

    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=3)
    plate = write_plate(tmp_path / "plate", images)
    assert classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=DYES) == []


@extra
def test_plates_side_by_side_are_plates(tmp_path):
    from tests.appliance.layouts.write_czi import write_plate

    plates = [write_plate(tmp_path / "screen" / f"P{n}", random_images(sites=(1,))) for n in (1, 2)]
    assert plate_folders([tmp_path / "screen"]) == plates
    assert {f.plate for f in discover_fields(plates[1], channels=DYES)[0]} == {"P2"}


@extra
def test_a_scene_larger_than_the_fit_allows_is_refused_before_its_pixels_are_read(tmp_path, monkeypatch):
    """As for TIFFs (test_imageio.py's decompression bomb): the size the file declares is checked first."""
    from bioio import BioImage

    from tests.appliance.layouts.write_czi import write_plate

    plate = write_plate(tmp_path / "P1", random_images(wells=("B02",), sites=(1,), shape=(4 * SIZE[0], 5 * SIZE[1])))
    fields, _ = discover_fields(plate, channels=DYES)

    def never(*args, **kwargs):
        raise AssertionError("pixels read before the declared size was checked")

    monkeypatch.setattr(BioImage, "get_image_data", never)
    with pytest.raises(FieldError, match=r"plate\.czi: field is 512x640 \(HxW\), the model takes 128x128"):
        read_plate_field(fields[0], SIZE)
    with pytest.raises(FieldError, match="more than 16 times the model's 128x128 pixels"):
        read_plate_field(fields[0], SIZE, fit="resize")

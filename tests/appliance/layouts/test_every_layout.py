"""The same fields, written as each imager writes them, give the same predictions to the last digit.

Each writer lays out the plate as its vendor does (see its docstring for the source); classify
must read the same pixels whatever the layout, so every Probability_ column equals the BBBC021
twin's. Channel names a writer gives as a vendor would (dyes, filters) are mapped with --channels,
as a user would. Plates of any layout side by side in a folder are its plates, and the folders
an imager writes inside a plate are never plates of their own.
"""

from pathlib import Path

import pytest

from appliance.classify import classify_plate
from appliance.inference import Classifier
from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields, plate_folders
from tests.appliance.layouts import (
    write_cellvoyager,
    write_harmony,
    write_incell,
    write_loaddata,
    write_metaxpress,
    write_metaxpress_ai,
    write_ome_tiff,
    write_ome_zarr,
)
from tests.appliance.layouts.same_fields import probabilities, random_images, write_bbbc021

DYES = "DAPI=HOECHST 33342,Tubulin=Alexa 488,Actin=Alexa 568"
LAYOUTS = {  # layout -> (writer, its options, --channels)
    "harmony": (write_harmony.write_plate, {}, DYES),
    "harmony (V7)": (write_harmony.write_plate, {"version": "V7"}, DYES),
    "cellvoyager": (write_cellvoyager.write_plate, {}, None),
    "cellvoyager (CQ3000)": (write_cellvoyager.write_plate, {"projection": True}, None),
    "incell": (write_incell.write_plate, {}, "Tubulin=FITC - FITC,Actin=TexasRed - TexasRed"),
    "metaxpress": (write_metaxpress.write_plate, {}, "Tubulin=FITC,Actin=Texas Red"),
    "metaxpress-ai": (write_metaxpress_ai.write_plate, {}, "Tubulin=FITC,Actin=TRITC"),
    "loaddata": (write_loaddata.write_plate, {}, "DAPI=OrigDNA,Tubulin=OrigTubulin,Actin=OrigActin"),
    "ome-zarr": (write_ome_zarr.write_plate, {"version": "0.5"}, DYES),
    "ome-zarr (0.4)": (write_ome_zarr.write_plate, {"version": "0.4"}, DYES),
    "ome-tiff": (write_ome_tiff.write_plate, {"mode": "single"}, DYES),
    "ome-tiff (companion)": (write_ome_tiff.write_plate, {"mode": "companion"}, DYES),
    "ome-tiff (multi-file)": (write_ome_tiff.write_plate, {"mode": "multifile"}, DYES),
    "ome-tiff (per field)": (write_ome_tiff.write_plate, {"mode": "fields"}, DYES),
}
# A folder the imager writes inside a plate that, given alone, is read as that plate (named after the plate folder)
READ_AS_ITS_PLATE = {
    "harmony": "Images",
    "harmony (V7)": "Images",
    "cellvoyager (CQ3000)": "Projection",
    "metaxpress": "TimePoint_1",
    "metaxpress-ai": "experiment",
}
# Folders inside a plate that are no plate at all: an OME-Zarr row, well, image and full-resolution array
NEVER_PLATES = dict.fromkeys(("ome-zarr", "ome-zarr (0.4)"), ("B", "B/2", "B/2/0", "B/2/0/s0"))


@pytest.fixture(scope="module")
def twin(tmp_path_factory, tiny_model):
    """The fields, and their probabilities when written as a BBBC021 plate."""
    images = random_images(wells=("B02", "C03", "H12"), sites=(1, 2), seed=11)
    folder = tmp_path_factory.mktemp("twin")
    classify_plate(write_bbbc021(folder / "plate", images), Classifier(tiny_model), folder / "out")
    return images, probabilities(folder / "out")


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_reads_the_same_pixels(name, twin, tiny_model, tmp_path):
    images, want = twin
    write, options, channels = LAYOUTS[name]
    plate = write(tmp_path / "plate", images, **options)
    assert detect_layout(plate) == name.split(" ")[0]
    summary = classify_plate(plate, Classifier(tiny_model), tmp_path / "out", channels=channels)
    assert summary["counts"]["failed"] == 0
    assert probabilities(tmp_path / "out") == want


def side_by_side(name: str, screen: Path) -> list[Path]:
    """Two plates of the layout, P1 and P2, written side by side in the screen folder."""
    write, options, _ = LAYOUTS[name]
    images = random_images(sites=(1,))
    if write is write_ome_zarr.write_plate:  # its plate is the .zarr folder it makes in the folder given
        return [write(screen, images, name=f"P{n}.zarr", **options) for n in (1, 2)]
    return [write(screen / f"P{n}", images, **options) for n in (1, 2)]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_plates_side_by_side_are_plates_and_their_sub_folders_are_not(name, tmp_path):
    plates = side_by_side(name, tmp_path / "screen")
    assert plate_folders([tmp_path / "screen"]) == plates
    assert plate_folders([plates[0]]) == [plates[0]]
    if name in READ_AS_ITS_PLATE:
        inside = plates[1] / READ_AS_ITS_PLATE[name]
        assert detect_layout(inside) == name.split(" ")[0] and plate_folders([inside]) == [inside]
        assert discover_fields(inside, channels=LAYOUTS[name][2])[0][0].plate == "P2"
    for inside in (plates[1] / folder for folder in NEVER_PLATES.get(name, ())):
        with pytest.raises(PlateError, match="neither a plate folder nor a folder of plate folders"):
            plate_folders([inside])
        with pytest.raises(PlateError, match="no plate layout recognised"):
            detect_layout(inside)

"""OME-TIFF plates: one image per file (tifffile's own OME-XML), a whole plate in one file, multi-file
datasets and companion files (write_ome_tiff)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.imageio import FieldError, read_plate_field
from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields, plate_folders
from tests.appliance.layouts.same_fields import (
    check_planes,
    classified_as_bbbc021,
    discovered_with_a_file_gone,
    pixels,
    random_images,
)
from tests.appliance.layouts.write_ome_tiff import write_ome, write_plate
from tests.conftest import SIZE

SMALL = (64, 80)
DYES = "Tubulin=Alexa 488,Actin=Alexa 568"  # named by dye: only HOECHST says which channel it is


def blank(value: int = 100) -> np.ndarray:
    return np.full(SMALL, value, dtype=np.uint16)


def companion_of(plate: Path) -> Path:
    return next(plate.glob("*.companion.ome"))


def edit_text(path: Path, edit) -> Path:
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def edit_embedded(path: Path, edit) -> Path:
    """Rewrite the OME-XML in the file's first IFD through edit(text) -> text."""
    tifffile.tiffcomment(path, edit(tifffile.tiffcomment(path)).encode())
    return path


# --- One image per file, as tifffile writes an OME-TIFF ------------------------------------------------------------


def test_channels_found_by_name_in_any_order(tmp_path):
    path = write_ome(tmp_path / "P1_B02_s3.ome.tif", ["Phalloidin 568", "Hoechst 33342", "alpha-Tubulin"])
    assert detect_layout(tmp_path) == "ome-tiff"
    fields, failures = discover_fields(tmp_path)
    assert failures == []
    (field,) = fields
    assert (field.well, field.site, field.paths, field.planes) == ("B02", 3, (path,) * 3, (1, 2, 0))


def test_channels_by_option_names_or_planes_and_unnamed_three_channels(tmp_path):
    write_ome(tmp_path / "B02_s1.ome.tif", ["ch a", "ch b", "ch c", "ch d"])
    fields, _ = discover_fields(tmp_path, channels="DAPI=CH D,Tubulin=0,Actin=ch b")
    assert fields[0].planes == (3, 0, 1)
    (tmp_path / "B02_s1.ome.tif").unlink()
    write_ome(tmp_path / "B02_s1.ome.tif", ["Channel:0:0", "Channel:0:1", "Channel:0:2"])
    fields, _ = discover_fields(tmp_path)
    assert fields[0].planes == (0, 1, 2)


def test_ambiguous_channels_fail_the_file_or_the_plate(tmp_path):
    write_ome(tmp_path / "B02_s1.ome.tif", ["DAPI", "Tubulin", "Actin"])
    write_ome(tmp_path / "B02_s2.ome.tif", ["DAPI", "Hoechst", "Tubulin", "Actin"])
    fields, failures = discover_fields(tmp_path)
    assert [(f.well, f.site) for f in fields] == [("B02", 1)]
    assert failures[0].file == "B02_s2.ome.tif"
    assert "'DAPI' (0), 'Hoechst' (1) all look like DAPI; pick one with --channels DAPI=NAME" in failures[0].reason
    (tmp_path / "B02_s1.ome.tif").unlink()
    with pytest.raises(PlateError, match="the channels of no file match"):
        discover_fields(tmp_path)
    fields, failures = discover_fields(tmp_path, channels="DAPI=Hoechst")
    assert fields[0].planes == (1, 2, 3)


def test_well_and_site_from_the_ome_plate_metadata(tmp_path):
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Plate ID="Plate:0"><Well ID="Well:0" Row="2" Column="10">'
        '<WellSample ID="WellSample:0" Index="0"><ImageRef ID="Image:9"/></WellSample>'
        '<WellSample ID="WellSample:1" Index="1"><ImageRef ID="Image:0"/></WellSample></Well></Plate>'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="80" SizeY="64" '
        'SizeC="3" SizeZ="1" SizeT="1"><Channel ID="Channel:0:0" Name="DAPI"/><Channel ID="Channel:0:1" '
        'Name="Tubulin"/><Channel ID="Channel:0:2" Name="Actin"/><TiffData IFD="0" PlaneCount="3"/></Pixels>'
        "</Image></OME>"
    )
    tifffile.imwrite(
        tmp_path / "scan0001.ome.tif", np.stack([blank()] * 3), description=xml, metadata=None, photometric="minisblack"
    )
    fields, failures = discover_fields(tmp_path)
    assert failures == []
    assert [(f.well, f.row, f.column, f.site) for f in fields] == [("C11", "C", 11, 2)]


def test_failures_corrupt_no_position_duplicate(tmp_path):
    write_ome(tmp_path / "B02_s1.ome.tif", ["DAPI", "Tubulin", "Actin"])
    (tmp_path / "B03_s1.ome.tif").write_bytes(b"not a TIFF at all")
    write_ome(tmp_path / "scan.ome.tif", ["DAPI", "Tubulin", "Actin"])
    write_ome(tmp_path / "x_B02_s1.ome.tif", ["DAPI", "Tubulin", "Actin"])
    tifffile.imwrite(tmp_path / "B05_s1.ome.tif", np.zeros((*SMALL, 3), np.uint16), photometric="rgb")
    fields, failures = discover_fields(tmp_path)
    assert fields == []  # B02 s1 is given twice
    reasons = {f.file: f.reason for f in failures}
    assert reasons["B03_s1.ome.tif"].startswith("unreadable TIFF")
    assert reasons["scan.ome.tif"].startswith("no well and site in the file name")
    assert reasons["B02_s1.ome.tif; x_B02_s1.ome.tif"] == "more than one file for this well and site"
    assert reasons["B05_s1.ome.tif"] == "has RGB (several samples per pixel) channels; grayscale channels are expected"
    assert [(f.well, f.site) for f in failures if f.file == "B03_s1.ome.tif"] == [("B03", 1)]


def test_a_z_stack_file_asks_for_a_plane(tmp_path):
    """One image per file may hold z-planes too: as for every layout, --plane or --project max is asked for."""
    stack = np.arange(2 * 3 * 64 * 80, dtype=np.uint16).reshape(2, 3, *SMALL)
    tifffile.imwrite(
        tmp_path / "B04_s1.ome.tif", stack, metadata={"axes": "ZCYX", "Channel": {"Name": ["DAPI", "Tubulin", "Actin"]}}
    )
    with pytest.raises(PlateError, match=r"2 planes \(0, 1\); choose one with --plane N"):
        discover_fields(tmp_path)
    (field,), _ = discover_fields(tmp_path, plane=1)
    assert field.planes == (3, 4, 5) and field.source == "plane 1"
    assert np.array_equal(pixels(field, SMALL), stack[1])


def test_a_multi_file_dataset_read_from_any_of_its_files(tmp_path):
    """Each file of a multi-file OME dataset may carry the XML of all images; UUID FileName says whose pixels.
    B02_s2.ome.tif is listed but not there: its field is found, and fails when read."""
    images = "".join(
        f'<Image ID="Image:{i}"><Pixels ID="Pixels:{i}" DimensionOrder="XYCZT" Type="uint16" SizeX="80" SizeY="64" '
        f'SizeC="{c}" SizeZ="1" SizeT="1">'
        + "".join(f'<Channel ID="Channel:{i}:{k}" Name="{n}"/>' for k, n in enumerate(names[:c]))
        + f'<TiffData IFD="0" PlaneCount="{c}"><UUID FileName="{file}">urn:uuid:{i}</UUID></TiffData></Pixels></Image>'
        for i, (file, c, names) in enumerate(
            [
                ("B02_s1.ome.tif", 4, ["x", "Actin", "Tubulin", "DAPI"]),
                ("B02_s2.ome.tif", 3, ["DAPI", "Tubulin", "Actin"]),
            ]
        )
    )
    xml = f'<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">{images}</OME>'
    tifffile.imwrite(
        tmp_path / "B02_s1.ome.tif", np.stack([blank()] * 4), description=xml, metadata=None, photometric="minisblack"
    )
    fields, failures = discover_fields(tmp_path)
    assert failures == [] and fields[0].planes == (3, 2, 1)
    assert [(f.well, f.site, f.paths[0].name) for f in fields] == [
        ("B02", 1, "B02_s1.ome.tif"),
        ("B02", 2, "B02_s2.ome.tif"),
    ]
    with pytest.raises(FieldError, match="B02_s2.ome.tif: file not found"):
        read_plate_field(fields[1], SMALL)


# --- Plates: one file, a multi-file dataset, a companion ----------------------------------------------------------

MULTI = ("single", "companion", "multifile", "master")


@pytest.mark.parametrize("mode", (*MULTI, "fields"))
def test_fields_and_pixels_are_those_written(tmp_path, mode):
    images = random_images(wells=("B02", "C03", "H12"), sites=(1, 2))
    plate = write_plate(tmp_path / "Plate 1", images, mode=mode)
    assert detect_layout(plate) == "ome-tiff"
    fields, failures = discover_fields(plate, channels=DYES)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout, f.source) for f in fields] == [
        ("Plate 1", well, site, "ome-tiff", "") for well, site in sorted(images)
    ]
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))
    c03 = fields[3]
    if mode == "single":  # the fourth image of the file: its pages 9, 10, 11
        assert (c03.paths, c03.planes) == ((plate / "Plate 1.ome.tif",) * 3, (9, 10, 11))
    elif mode == "fields":
        assert (c03.paths, c03.planes) == ((plate / "Plate 1_C03_s2.ome.tif",) * 3, (0, 1, 2))
    else:
        assert (c03.paths, c03.planes) == ((plate / "C3_f2.ome.tif",) * 3, (0, 1, 2))
    assert plate_folders([tmp_path]) == [plate]


def test_the_site_is_the_place_in_the_well_not_the_wellsample_index(tmp_path):
    """WellSample@Index runs over the whole plate (the OME schema: unique for a plate); the site is the place
    of the WellSample in its Well, in the order of Index, whatever the order of the document."""
    images = random_images(wells=("B02", "C03"), sites=(1, 2))
    plate = write_plate(tmp_path / "plate", images, mode="companion")
    companion = companion_of(plate)
    assert re.findall(r'Index="(\d)"><ImageRef ID="Image:(\d)"', companion.read_text()) == [
        ("0", "0"),
        ("1", "1"),
        ("2", "2"),
        ("3", "3"),
    ]
    edit_text(companion, lambda text: text.replace('Index="2"', 'Index="9"'))  # C03's first sample: now its last
    fields, failures = discover_fields(plate, channels=DYES)
    assert failures == [] and [(f.well, f.site, f.paths[0].name) for f in fields] == [
        ("B02", 1, "B2_f1.ome.tif"),
        ("B02", 2, "B2_f2.ome.tif"),
        ("C03", 1, "C3_f2.ome.tif"),
        ("C03", 2, "C3_f1.ome.tif"),
    ]


@pytest.mark.parametrize("mode", MULTI)
def test_planes_in_any_dimension_order_and_page_order(tmp_path, mode):
    """TiffData FirstC/FirstZ/FirstT place each page; here the pages are stored in reverse."""
    images = random_images(wells=("B02", "D04"), sites=(1,), shape=(3, *SIZE))
    plate = write_plate(tmp_path / "plate", images, mode=mode, order="XYZCT", reverse=True)
    check_planes(plate, images, DYES, (0, 1, 2))


@pytest.mark.parametrize("mode", ("single", "companion"))
def test_time_points_refused_unless_one_is_chosen(tmp_path, mode):
    images = random_images(wells=("B02",), sites=(1, 2), shape=(2, 1, *SIZE))
    plate = write_plate(tmp_path / "plate", images, mode=mode, order="XYTCZ", block=True)
    xml = companion_of(plate).read_text() if mode == "companion" else tifffile.tiffcomment(plate / "plate.ome.tif")
    assert len(re.findall("<TiffData ", xml)) == 2  # one per image: IFD and PlaneCount, planes in DimensionOrder
    with pytest.raises(PlateError, match=r"2 time points \(0, 1\); choose one with --timepoint N"):
        discover_fields(plate, channels=DYES)
    fields, _ = discover_fields(plate, channels=DYES, timepoint=1)
    assert {f.source for f in fields} == {"timepoint 1"}
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a[1, 0] for a in images[field.well, field.site]]))


@pytest.mark.parametrize("mode", ("single", "companion"))
def test_channels_by_id_or_by_name_beside_another_channel(tmp_path, mode):
    images = random_images(wells=("D04",), sites=(3,))
    names = ("Alexa 488", "Alexa 568", "HOECHST 33342")
    plate = write_plate(
        tmp_path / "plate",
        {k: (v[1], v[2], v[0]) for k, v in images.items()},
        names=names,
        extra=("Alexa 647",),
        mode=mode,
    )
    by_id, _ = discover_fields(plate, channels="DAPI=2,Tubulin=0,Actin=1")
    by_name, _ = discover_fields(plate, channels="dapi=hoechst 33342,Tubulin=ALEXA 488,Actin=Alexa 568")
    assert by_id == by_name and by_id[0].planes[0] % 4 == 2
    assert np.array_equal(pixels(by_id[0]), np.stack(images["D04", 3]))
    with pytest.raises(PlateError, match=r"Actin='Alexa 594': no channel.*3 \(Alexa 647\)"):
        discover_fields(plate, channels="Tubulin=Alexa 488,Actin=Alexa 594")


def test_a_file_gone_a_file_outside_and_a_binary_only_file_no_metadata_lists(tmp_path):
    images = random_images(wells=("B02", "C03", "D04"), sites=(1,))
    plate = write_plate(tmp_path / "plate", images, mode="companion")
    (plate / "B2_f1.ome.tif").unlink()  # listed, absent: its field is found and fails when read
    shutil.move(plate / "C3_f1.ome.tif", tmp_path / "C3_f1.ome.tif")
    edit_text(companion_of(plate), lambda text: text.replace('FileName="C3_f1.ome.tif"', 'FileName="../C3_f1.ome.tif"'))
    write_plate(tmp_path / "other", random_images(wells=("E05",), sites=(1,)), mode="companion")
    shutil.copy(tmp_path / "other" / "E5_f1.ome.tif", plate)  # BinaryOnly, naming other.companion.ome
    fields, failures = discovered_with_a_file_gone(plate, DYES, "B2_f1.ome.tif")
    assert [(f.well, f.site) for f in fields] == [("B02", 1), ("D04", 1)]
    assert [(f.well, f.site, f.file) for f in failures] == [("", 0, "E5_f1.ome.tif"), ("C03", 1, "C3_f1.ome.tif")]
    assert failures[0].reason == "its OME-XML is in other.companion.ome (BinaryOnly), which is not there"
    assert re.fullmatch(r".*C3_f1\.ome\.tif: outside the plate folder .*plate; refused", failures[1].reason)


def test_binary_only_files_naming_a_companion_of_another_name(tmp_path):
    images = random_images(wells=("B02", "C03"), sites=(1,))
    plate = write_plate(tmp_path / "plate", images, mode="companion")
    companion_of(plate).rename(plate / "plate.xml")
    for path in plate.glob("*.ome.tif"):
        edit_embedded(path, lambda text: text.replace("plate.companion.ome", "plate.xml"))
    assert detect_layout(plate) == "ome-tiff"
    fields, failures = discover_fields(plate, channels=DYES)
    assert failures == [] and len(fields) == 2
    (plate / "plate.xml").unlink()
    fields, failures = discover_fields(plate, channels=DYES)
    assert fields == [] and {f.reason for f in failures} == {
        "its OME-XML is in plate.xml (BinaryOnly), which is not there"
    }


def test_planes_on_no_page_fail_their_image_only(tmp_path):
    images = random_images(wells=("B02", "C03"), sites=(1,))
    plate = write_plate(tmp_path / "plate", images, mode="single")
    edit_embedded(
        plate / "plate.ome.tif",
        lambda text: text.replace(
            'FirstC="1" FirstZ="0" FirstT="0" IFD="4"', 'FirstC="1" FirstZ="0" FirstT="0" IFD="40"'
        ),
    )
    fields, failures = discover_fields(plate, channels=DYES)
    assert [f.well for f in fields] == ["B02"]
    assert [(f.well, f.site, f.file) for f in failures] == [("C03", 1, "plate.ome.tif (Image:1)")]
    assert failures[0].reason.startswith("Image:1: 1 of its 3 planes are on no page of plate.ome.tif")


def test_images_of_one_file_without_plate_metadata_have_no_position(tmp_path):
    plate = write_plate(tmp_path / "plate", random_images(wells=("B02",), sites=(1, 2)), mode="single")
    edit_embedded(plate / "plate.ome.tif", lambda text: re.sub(r"<Plate .*</Plate>", "", text, flags=re.S))
    _, failures = discover_fields(plate, channels=DYES)
    assert [(f.file, f.reason) for f in failures] == [
        (
            f"plate.ome.tif (Image:{i})",
            "no well and site in the file name (..._B02_s1.ome.tif) or the OME Plate metadata",
        )
        for i in (0, 1)
    ]


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03", "C02"), sites=(1, 2), seed=3)
    plate = write_plate(tmp_path / "plate", images, mode="companion")
    (plate / "C2_f2.ome.tif").unlink()  # listed, absent: that field fails, the rest go on
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels=DYES)
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["File"]) for f in failures] == [("C02", "2", "C2_f2.ome.tif")]
    assert failures[0]["Reason"] == "file not found"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[: len(text) // 2], r"plate.companion.ome: an OME-XML companion file is not readable XML"),
        (lambda text: text.replace('Row="2" ', ""), r"plate.companion.ome: Well Well:1: no Row"),
        (
            lambda text: text.replace('SizeC="3"', 'SizeC="three"', 1),
            r"companion.ome: Image:0: SizeC 'three' is not a whole",
        ),
        (
            lambda text: text.replace("<OME ", "<OMEX ").replace("</OME>", "</OMEX>"),
            r"not OME-XML \(its root element is <OMEX>",
        ),
        (lambda text: re.sub(r"<UUID [^<]*</UUID>", "", text, count=1), r"Image:0: a TiffData with no UUID FileName"),
        (
            lambda text: text.replace('DimensionOrder="XYCZT"', 'DimensionOrder="XYZ"', 1),
            r"Image:0: DimensionOrder 'XYZ'",
        ),
        (lambda text: text.replace("</Plate>", '</Plate><Plate ID="Plate:1"/>'), r"describes 2 plates"),
    ],
)
def test_a_bad_companion_is_a_plate_error_naming_it(tmp_path, edit, message):
    plate = write_plate(tmp_path / "plate", random_images(), mode="companion")
    edit_text(companion_of(plate), edit)
    assert detect_layout(plate) == "ome-tiff"
    with pytest.raises(PlateError, match=message):
        discover_fields(plate, channels=DYES)

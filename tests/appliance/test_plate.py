"""Plate discovery: every layout's file names, channel maps, plate maps, and incomplete fields reported."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.plate import PlateError, detect_layout, discover_fields, parse_channels, plate_folders
from tests.conftest import write_field, write_plate


def test_complete_plate_sorted_in_channel_order(tmp_path):
    plate = tmp_path / "Week1_22123"
    written = write_plate(plate, wells=("C02", "B10", "B02"), sites=(2, 1))
    (plate / "B02_s1_w1_thumbBEDC2073-A983-4B98-95E9-84466707A25D.tif").write_bytes(b"thumb")
    (plate / "notes.txt").write_text("not an image")
    (plate / "B02_s1_w3BEDC2073-A983-4B98-95E9-84466707A25D.tif").write_bytes(b"other stain")
    fields, failures = discover_fields(plate)
    assert failures == []
    assert [(f.well, f.site) for f in fields] == [
        ("B02", 1),
        ("B02", 2),
        ("B10", 1),
        ("B10", 2),
        ("C02", 1),
        ("C02", 2),
    ]
    first = fields[0]
    assert (first.plate, first.row, first.column) == ("Week1_22123", "B", 2)
    assert first.paths == tuple(written[("B02", 1)][c] for c in ("DAPI", "Tubulin", "Actin"))


def test_prefixed_names_and_tiff_extensions(tmp_path):
    rng = np.random.default_rng(0)
    paths = write_field(tmp_path, "E04", 2, rng)
    for channel, ext in (("DAPI", ".TIF"), ("Actin", ".tiff")):
        new = paths[channel].with_name("Week5_130707_" + paths[channel].stem + ext)
        paths[channel] = paths[channel].rename(new)
    fields, failures = discover_fields(tmp_path)
    assert failures == [] and len(fields) == 1
    assert (fields[0].well, fields[0].site) == ("E04", 2)
    assert fields[0].paths == (paths["DAPI"], paths["Tubulin"], paths["Actin"])


def test_missing_and_repeated_channels_are_failures(tmp_path):
    rng = np.random.default_rng(0)
    write_field(tmp_path, "B02", 1, rng)
    missing = write_field(tmp_path, "B02", 2, rng, channels=("DAPI", "Tubulin"))
    write_field(tmp_path, "B03", 1, rng)
    extra = write_field(tmp_path, "B03", 1, rng, channels=("Actin",))["Actin"]
    fields, failures = discover_fields(tmp_path)
    assert [(f.well, f.site) for f in fields] == [("B02", 1)]
    assert [(f.well, f.site) for f in failures] == [("B02", 2), ("B03", 1)]
    assert failures[0].reason == "missing channel Actin (w4)"
    assert missing["DAPI"].name in failures[0].file
    assert "more than one file for channel Actin (w4)" == failures[1].reason
    assert extra.name in failures[1].file


def test_folder_without_fields_is_an_error_naming_it(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(PlateError, match=str(tmp_path)):
        discover_fields(tmp_path)
    with pytest.raises(PlateError, match="not a folder"):
        discover_fields(tmp_path / "absent")


# --- Other layouts, --channels, --platemap, folders of plates -------------------------------------------------------

SMALL = (64, 80)
UUID = "BEDC2073-A983-4B98-95E9-84466707A25D"


def blank(value: int = 100, size=SMALL) -> np.ndarray:
    return np.full(size, value, dtype=np.uint16)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_bbbc021_compound_and_concentration_from_the_image_csv_two_folders_up(tmp_path):
    plate = tmp_path / "Week1" / "Week1_22123"
    written = write_plate(plate, wells=("B02", "B03"), sites=(1,))
    write_csv(
        tmp_path / "BBBC021_v1_image.csv",
        [
            {
                "Image_FileName_DAPI": written[("B02", 1)]["DAPI"].name,
                "Image_Metadata_Compound": "taxol",
                "Image_Metadata_Concentration": "0.300000",
            }
        ],
    )
    fields, failures = discover_fields(plate, layout="bbbc021")
    assert failures == []
    assert [(f.well, f.compound, f.concentration) for f in fields] == [("B02", "taxol", 0.3), ("B03", None, None)]


def test_metaxpress_in_timepoint_1_default_w1_w2_w3_and_optional_site(tmp_path):
    plate = tmp_path / "Plate_7"
    for name in (
        f"Plate_7_B02_s1_w1{UUID}.tif",
        "Plate_7_B02_s1_w2.TIF",
        "Plate_7_B02_s1_w3.tif",
        "Plate_7_C03_w1.tif",
        "Plate_7_C03_w2.tif",
        "Plate_7_C03_w3.tif",
        "Plate_7_C03_w4.tif",
    ):
        (plate / "TimePoint_1").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(plate / "TimePoint_1" / name, blank())
    (plate / "TimePoint_1" / "Plate_7_B02_s1_w1_thumb.tif").write_bytes(b"thumbnail")
    assert detect_layout(plate) == "metaxpress"
    fields, failures = discover_fields(plate)
    assert failures == []
    assert [(f.plate, f.well, f.site) for f in fields] == [("Plate_7", "B02", 1), ("Plate_7", "C03", 1)]
    assert [p.name for p in fields[1].paths] == ["Plate_7_C03_w1.tif", "Plate_7_C03_w2.tif", "Plate_7_C03_w3.tif"]
    # --channels overrides one channel; the others keep the layout's default
    fields, failures = discover_fields(plate, channels="Actin=w4")
    assert [f.well for f in fields] == ["C03"] and fields[0].paths[2].name == "Plate_7_C03_w4.tif"
    assert [(f.well, f.reason) for f in failures] == [("B02", "missing channel Actin (w4)")]


def test_metaxpress_time_series_is_refused(tmp_path):
    for timepoint in ("TimePoint_1", "TimePoint_2"):
        (tmp_path / "P" / timepoint).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "P" / timepoint / "P_B02_s1_w1.tif", blank())
    with pytest.raises(PlateError, match="TimePoint_2: time series and z-stacks are not supported"):
        discover_fields(tmp_path / "P")


def test_a_channel_map_that_fits_no_file_is_a_plate_error_with_a_hint(tmp_path):
    for n in (1, 2, 3):  # a flat MetaXpress plate: auto reads it as BBBC021, which wants w4
        tifffile.imwrite(tmp_path / f"X_B02_s1_w{n}.tif", blank())
    with pytest.raises(PlateError, match=r"no file of Actin \(w4\).*the plate has w1, w2, w3.*--channels"):
        discover_fields(tmp_path)
    fields, failures = discover_fields(tmp_path, layout="metaxpress")
    assert len(fields) == 1 and failures == []


@pytest.mark.parametrize(
    "text, message",
    [("DAPI=w1,Tubulin", "CHANNEL=VALUE"), ("Nucleus=w1", "CHANNEL=VALUE"), ("DAPI=w1,dapi=w2", "DAPI is given twice")],
)
def test_bad_channels_option_is_a_plate_error(text, message):
    with pytest.raises(PlateError, match=message):
        parse_channels(text)


def test_channels_option_must_suit_the_layout(tmp_path):
    write_plate(tmp_path, wells=("B02",), sites=(1,))
    with pytest.raises(PlateError, match="wavelength number"):
        discover_fields(tmp_path, channels="DAPI=Hoechst")
    with pytest.raises(PlateError, match="one wavelength for two channels"):
        discover_fields(tmp_path, channels="Tubulin=w1")


def write_manifest_plate(plate: Path, rows: list[dict]) -> Path:
    (plate / "images").mkdir(parents=True, exist_ok=True)
    for name in ("d1.tif", "t1.tif", "a1.tif"):
        tifffile.imwrite(plate / "images" / name, blank())
    return write_csv(plate / "manifest.csv", rows)


def row(well="B02", site=1, dapi="images/d1.tif", tubulin="images/t1.tif", actin="images/a1.tif", **extra):
    return {"well": well, "site": site, "DAPI": dapi, "Tubulin": tubulin, "Actin": actin, **extra}


def test_manifest_fields_with_compound_and_concentration(tmp_path):
    plate = tmp_path / "P9"
    write_manifest_plate(
        plate,
        [
            row("c3", 2, compound="", concentration=""),
            row("B2", 1, actin=str((plate / "images" / "a1.tif").resolve()), compound="taxol", concentration="0.3"),
        ],
    )
    assert detect_layout(plate) == "manifest"
    fields, failures = discover_fields(plate)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.compound, f.concentration) for f in fields] == [
        ("P9", "B02", 1, "taxol", 0.3),
        ("P9", "C03", 2, None, None),
    ]
    assert fields[0].paths == tuple((plate / "images" / n).resolve() for n in ("d1.tif", "t1.tif", "a1.tif"))
    # the manifest can also be named in place of the plate folder, with other column names
    write_csv(
        plate / "other.csv",
        [{"well": "D4", "site": "1", "hoechst": "images/d1.tif", "tub": "images/t1.tif", "Actin": "images/a1.tif"}],
    )
    fields, failures = discover_fields(plate / "other.csv", channels="DAPI=Hoechst,Tubulin=tub")
    assert [(f.plate, f.well) for f in fields] == [("P9", "D04")]
    with pytest.raises(PlateError, match=r"no path column for DAPI \(column 'DAPI'\)"):
        discover_fields(plate / "other.csv")


def test_manifest_paths_must_stay_inside_the_plate_folder(tmp_path):
    plate = tmp_path / "P9"
    tifffile.imwrite(tmp_path / "outside.tif", blank())
    (plate / "images").mkdir(parents=True)
    os.symlink(tmp_path / "outside.tif", plate / "images" / "link.tif")
    write_manifest_plate(
        plate,
        [
            row("B02", 1, dapi="../outside.tif"),
            row("B02", 2, tubulin=str(tmp_path / "outside.tif")),
            row("B02", 3, actin="images/link.tif"),
            row("B02", 4, actin="images/gone.tif"),
            row("B02", 5, tubulin=""),
            row("B02", 6),
        ],
    )
    fields, failures = discover_fields(plate)
    assert [(f.well, f.site) for f in fields] == [("B02", 6)]
    reasons = [f.reason for f in failures]
    assert [f.site for f in failures] == [1, 2, 3, 4, 5]
    assert reasons[0].startswith("../outside.tif: outside the plate folder") and reasons[0].endswith("refused")
    assert "outside the plate folder" in reasons[1] and "outside the plate folder" in reasons[2]
    assert reasons[3] == "images/gone.tif: file not found"
    assert reasons[4] == "missing channel Tubulin (empty Tubulin)"
    assert failures[0].file == "manifest.csv line 2"


def test_manifest_bad_rows_and_duplicates_are_failures(tmp_path):
    write_manifest_plate(
        tmp_path,
        [row("B02", 1), row("B02", 1), row("nowhere", 1), row("B03", "x"), row("B04", 1, concentration="lots")],
    )
    fields, failures = discover_fields(tmp_path)
    assert fields == []
    assert {(f.well, f.file) for f in failures} == {
        ("B02", "manifest.csv lines 2, 3"),
        ("nowhere", "manifest.csv line 4"),
        ("B03", "manifest.csv line 5"),
        ("B04", "manifest.csv line 6"),
    }
    assert all(f.reason.startswith("bad row") for f in failures if f.well != "B02")


def test_platemap_fills_compound_and_concentration(tmp_path):
    plate = tmp_path / "Week1_22123"
    write_plate(plate, wells=("B02", "B03", "C02"), sites=(1,))
    platemap = write_csv(
        tmp_path / "map.csv",
        [
            {"plate": "", "well": "B2", "compound": "taxol", "concentration": "0.3"},
            {"plate": "Week1_22123", "well": "C02", "compound": "DMSO", "concentration": "0"},
            {"plate": "another", "well": "B03", "compound": "nocodazole", "concentration": "1"},
        ],
    )
    fields, _ = discover_fields(plate, platemap=platemap)
    assert [(f.well, f.compound, f.concentration) for f in fields] == [
        ("B02", "taxol", 0.3),
        ("B03", None, None),
        ("C02", "DMSO", 0.0),
    ]
    write_csv(platemap, [{"well": "B02", "compound": "taxol", "concentration": "high"}])
    with pytest.raises(PlateError, match=r"map.csv, line 2: could not convert"):
        discover_fields(plate, platemap=platemap)
    write_csv(platemap, [{"well": "B02", "compound": "taxol"}])
    with pytest.raises(PlateError, match="missing column"):
        discover_fields(plate, platemap=platemap)


def test_plate_folders_expands_a_folder_of_plates(tmp_path):
    write_plate(tmp_path / "plates" / "P2", wells=("B02",), sites=(1,))
    write_manifest_plate(tmp_path / "plates" / "P1", [row()])
    (tmp_path / "plates" / "empty").mkdir()
    single = tmp_path / "single"
    write_plate(single, wells=("B02",), sites=(1,))
    assert plate_folders([tmp_path / "plates", single, single]) == [
        tmp_path / "plates" / "P1",
        tmp_path / "plates" / "P2",
        single,
    ]
    assert plate_folders([tmp_path / "plates" / "P1" / "manifest.csv"]) == [tmp_path / "plates" / "P1" / "manifest.csv"]
    with pytest.raises(PlateError, match="neither a plate folder"):
        plate_folders([tmp_path / "plates" / "empty"])
    with pytest.raises(PlateError, match="not a folder"):
        plate_folders([tmp_path / "absent"])


def test_unknown_layout_is_a_plate_error(tmp_path):
    with pytest.raises(PlateError, match="unknown layout 'phenix'"):
        discover_fields(tmp_path, layout="phenix")


# pycytominer's / JUMP's platemap, laid out as the Broad's files are (tab-separated .txt, mg_per_ml beside
# mmoles_per_liter, numbers to 18 digits, solvent-only wells with an empty broad_sample), e.g.
# github.com/broadinstitute/lincs-cell-painting metadata/platemaps/2016_04_01_a549_48hr_batch1/platemap/
# C-7161-01-LM6-003.txt. Compound ids and doses here are made up in that layout.
JUMP_PLATEMAP = (
    "plate_map_name\twell_position\tbroad_sample\tmg_per_ml\tmmoles_per_liter\tsolvent\r\n"
    "C-7161-01-LM6-003\tB02\t\t\t\tDMSO\r\n"
    "C-7161-01-LM6-003\tB03\tBRD-K00000001-001-01-1\t1.44125300000000010\t9.99999999999999999\tDMSO\r\n"
    "C-7161-01-LM6-003\tC02\tBRD-K00000001-001-01-1\t0.00593108230487805194\t0.0411522633769230769\tDMSO\r\n"
)


def test_a_jump_platemap_fills_compound_and_concentration(tmp_path):
    plate = tmp_path / "SQ00015211"  # a JUMP plate barcode: the map is named in barcode_platemap.csv, not here
    write_plate(plate, wells=("B02", "B03", "C02", "C03"), sites=(1,))
    (tmp_path / "C-7161-01-LM6-003.txt").write_text(JUMP_PLATEMAP, newline="")
    fields, _ = discover_fields(plate, platemap=tmp_path / "C-7161-01-LM6-003.txt")
    assert [(f.well, f.compound, f.concentration) for f in fields] == [
        ("B02", "DMSO", None),  # the solvent only
        ("B03", "BRD-K00000001-001-01-1", 10.0),
        ("C02", "BRD-K00000001-001-01-1", 0.0411522633769230769),
        ("C03", None, None),  # not on the map
    ]

    two_maps = JUMP_PLATEMAP + "C-7161-01-LM6-004\tB02\tBRD-K00000002-001-01-1\t1.0\t3.33333333333076923\tDMSO\r\n"
    (tmp_path / "maps.txt").write_text(two_maps, newline="")
    with pytest.raises(PlateError, match=r"maps.txt: holds the plate maps C-7161-01-LM6-003, C-7161-01-LM6-004; none"):
        discover_fields(plate, platemap=tmp_path / "maps.txt")
    named = tmp_path / "C-7161-01-LM6-004"
    write_plate(named, wells=("B02",), sites=(1,))
    (field,), _ = discover_fields(named, platemap=tmp_path / "maps.txt")
    assert (field.compound, field.concentration) == ("BRD-K00000002-001-01-1", 3.33333333333076923)

    (tmp_path / "bad.txt").write_text(JUMP_PLATEMAP.replace("9.99999999999999999", "ten"), newline="")
    with pytest.raises(PlateError, match=r"bad.txt, line 3: could not convert string to float: 'ten'"):
        discover_fields(plate, platemap=tmp_path / "bad.txt")
    long = JUMP_PLATEMAP.replace("\tDMSO\r\nC-7161", "\tDMSO\textra\r\nC-7161", 1)
    (tmp_path / "long.txt").write_text(long, newline="")
    with pytest.raises(PlateError, match=r"long.txt, line 2: more values than the header has columns"):
        discover_fields(plate, platemap=tmp_path / "long.txt")
    (tmp_path / "cut.txt").write_text(JUMP_PLATEMAP.replace("\tsolvent", ""), newline="")
    with pytest.raises(PlateError, match=r"cut.txt: missing column\(s\) solvent"):
        discover_fields(plate, platemap=tmp_path / "cut.txt")

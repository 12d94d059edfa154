"""Plate discovery: BBBC021 file names, channel order, and incomplete fields reported."""

import numpy as np
import pytest

from appliance.plate import PlateError, discover_fields
from tests.conftest import write_field, write_plate


def test_complete_plate_sorted_in_channel_order(tmp_path):
    plate = tmp_path / "Week1_22123"
    written = write_plate(plate, wells=("C02", "B10", "B02"), sites=(2, 1))
    (plate / "B02_s1_w1_thumbBEDC2073-A983-4B98-95E9-84466707A25D.tif").write_bytes(b"thumb")
    (plate / "notes.txt").write_text("not an image")
    (plate / "B02_s1_w3BEDC2073-A983-4B98-95E9-84466707A25D.tif").write_bytes(b"other stain")
    fields, failures = discover_fields(plate)
    assert failures == []
    assert [(f.well, f.site) for f in fields] == [("B02", 1), ("B02", 2), ("B10", 1), ("B10", 2), ("C02", 1), ("C02", 2)]
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

"""Plate formats 6 to 1536 wells: row names, the plate a set of wells lies on, the map drawn for each."""

import numpy as np
import pytest
from matplotlib.image import imread

from appliance.layouts.base import parse_well, well_name
from appliance.platemap import FIGURE, draw_plate_map
from appliance.result_rows import row_order
from appliance.wells import PLATE_FORMATS, format_of, plate_format, row_index, row_letter

LABELS = ["Actin disruptors", "DMSO", "Eg5 inhibitors"]


def test_every_standard_plate_and_its_rows():
    assert [(p.wells, p.rows, p.columns) for p in PLATE_FORMATS] == [
        (6, 2, 3),
        (12, 3, 4),
        (24, 4, 6),
        (48, 6, 8),
        (96, 8, 12),
        (384, 16, 24),
        (1536, 32, 48),
    ]
    rows = format_of(1536).row_names
    assert rows[:3] == ("A", "B", "C") and rows[25:] == ("Z", "AA", "AB", "AC", "AD", "AE", "AF")
    assert all(row_index(row_letter(i)) == i for i in range(32))
    assert well_name(*parse_well("af48")) == "AF48"


def test_the_plate_wells_lie_on():
    assert plate_format([("A", 1), ("H", 12)]).wells == 96  # smaller formats only when named
    assert plate_format([("P", 24)]).wells == 384
    assert plate_format([("AF", 48), ("A", 1)]).wells == 1536
    assert plate_format([("B", 3)], wells=6).wells == 6
    with pytest.raises(ValueError, match="C01 lie outside a 6-well plate"):
        plate_format([("C", 1)], wells=6)
    with pytest.raises(ValueError, match="1000-well plates are not known"):
        plate_format([], wells=1000)


def test_wells_sort_in_plate_order_on_a_1536_well_plate():
    rows = [{"Metadata_Plate": "P", "Metadata_Well": w, "Metadata_Site": 1} for w in ("AA01", "Z48", "AF48", "B02")]
    assert [r["Metadata_Well"] for r in sorted(rows, key=row_order)] == ["B02", "Z48", "AA01", "AF48"]


@pytest.mark.parametrize("plate_wells", [6, 12, 24, 48, 1536])
def test_the_map_draws_every_plate_size(tmp_path, plate_wells):
    """The last well of the plate (B03 ... AF48) gets its class colour on a map of that plate's size."""
    plate = format_of(plate_wells)
    last = f"{plate.row_names[-1]}{plate.columns:02d}"
    wells = [{"Metadata_Well": last, "Classify_Class": "DMSO", "Classify_Confidence": 1.0}]
    path = draw_plate_map(wells, LABELS, tmp_path / "map.png", title="P", plate_wells=plate_wells)
    empty = draw_plate_map([], LABELS, tmp_path / "empty.png", title="P", plate_wells=plate_wells)
    image, blank = imread(path)[..., :3], imread(empty)[..., :3]
    (width, height), dpi = FIGURE[plate_wells]
    assert image.shape[:2] == (round(height * dpi), round(width * dpi))
    dmso = np.array([0x56, 0xB4, 0xE9]) / 255  # the palette's second colour
    well = (np.abs(image - dmso).max(axis=2) < 0.02) & ~(np.abs(blank - dmso).max(axis=2) < 0.02)
    ys, xs = np.nonzero(well)  # the disc of the last well: bottom right of the plate
    assert len(ys) > 20 and ys.mean() > image.shape[0] * 0.5
    # nothing else changed left of it (past the disc's anti-aliased rim, which stands out on a never-imaged
    # well's white more than it did on grey)
    assert np.abs(blank - image).max(axis=2)[:, : int(xs.min()) - 3].max() < 0.5


def test_classify_plate_wells_draws_the_plate_named(tiny_model, tmp_path):
    from appliance.classify import classify_plate
    from tests.conftest import write_plate

    write_plate(tmp_path / "plate", wells=("A01", "D06"), sites=(1,))
    summary = classify_plate(tmp_path / "plate", tiny_model, tmp_path / "out", plate_wells=24)
    assert summary["plate_wells"] == 24
    assert "24-well plate" in (tmp_path / "out" / "report.html").read_text()
    with pytest.raises(ValueError, match="1000-well plates are not known"):
        classify_plate(tmp_path / "plate", tiny_model, tmp_path / "out2", plate_wells=1000)
    assert not (tmp_path / "out2").exists()

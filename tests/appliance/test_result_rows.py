"""Result rows from classified fields: column names, plate order, wells, treatments, agreement."""

import numpy as np
import pytest

from appliance.layouts.base import Field
from appliance.result_rows import (
    cellprofiler_rows,
    channels_of,
    field_columns,
    field_row,
    probability_column,
    row_order,
    treatment_rows,
    well_rows,
)

LABELS = ("Actin disruptors", "DMSO", "Eg5 inhibitors")
CHANNELS = ("DAPI", "Tubulin", "Actin")


def field(well, site, compound=None, concentration=None):
    paths = tuple(f"/x/{well}_s{site}_w{c}.tif" for c in (1, 2, 4))
    return Field("P1", well, site, paths, compound=compound, concentration=concentration)


def test_probability_columns_replace_every_non_alphanumeric_run():
    assert probability_column("Actin disruptors") == "Probability_Actin_disruptors"
    assert probability_column("Cholesterol-lowering") == "Probability_Cholesterol_lowering"
    assert probability_column("a -- b") == "Probability_a_b"


def test_plate_order_is_row_then_column_then_site_and_channels_come_from_the_columns():
    wells = ["AA01", "B10", "B02", "A12"]
    rows = [{"Metadata_Plate": "P1", "Metadata_Well": w, "Metadata_Site": s} for w in wells for s in (2, 1)]
    assert [(r["Metadata_Well"], r["Metadata_Site"]) for r in sorted(rows, key=row_order)] == [
        ("A12", 1),
        ("A12", 2),
        ("B02", 1),
        ("B02", 2),
        ("B10", 1),
        ("B10", 2),
        ("AA01", 1),
        ("AA01", 2),
    ]
    assert channels_of(field_columns(LABELS, ("w1", "w2"))) == ("w1", "w2")


def test_wells_and_treatments_aggregate_with_agreement():
    probs = {
        ("B02", 1): [0.7, 0.2, 0.1],
        ("B02", 2): [0.2, 0.5, 0.3],
        ("B02", 3): [0.6, 0.3, 0.1],
        ("B03", 1): [0.1, 0.8, 0.1],
        ("C02", 1): [0.1, 0.1, 0.8],
    }
    treatment = {"B02": ("taxol", 0.3), "B03": ("taxol", 0.3), "C02": (None, None)}
    rows = [
        field_row(field(w, s, *treatment[w]), "", np.array(p), LABELS, CHANNELS, "abc", "bf16")
        for (w, s), p in probs.items()
    ]
    numbered = cellprofiler_rows(rows, CHANNELS)
    assert sorted(numbered[0]) == sorted(field_columns(LABELS, CHANNELS))
    assert [r["ImageNumber"] for r in numbered] == [1, 2, 3, 4, 5]
    assert (numbered[0]["PathName_Tubulin"], numbered[0]["URL_Tubulin"]) == ("/x", "file:///x/B02_s1_w2.tif")
    wells = well_rows(rows, LABELS)
    assert [(w["Metadata_Well"], w["Count_Fields"], w["Classify_Class"]) for w in wells] == [
        ("B02", 3, "Actin disruptors"),
        ("B03", 1, "DMSO"),
        ("C02", 1, "Eg5 inhibitors"),
    ]
    assert wells[0]["Classify_Agreement"] == pytest.approx(2 / 3)
    assert wells[0][probability_column("DMSO")] == pytest.approx(1.0 / 3)
    assert {w["Model_Precision"] for w in wells} == {"bf16"}
    (taxol,) = treatment_rows(wells, LABELS)  # C02's compound is unknown: no treatment row
    assert (
        taxol["Metadata_Compound"],
        taxol["Metadata_Concentration"],
        taxol["Count_Wells"],
        taxol["Count_Fields"],
        taxol["Classify_Agreement"],
    ) == ("taxol", 0.3, 2, 4, 0.5)
    assert taxol[probability_column("DMSO")] == pytest.approx((1 / 3 + 0.8) / 2)

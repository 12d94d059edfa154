"""Result rows from classified fields: column names, plate order, wells, treatments, agreement."""

from dataclasses import replace

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


def test_the_annotated_class_right_or_wrong_and_near_chance_calls_are_marked():
    """Metadata_MoA and Classify_Correct where the class is known (empty where not); Classify_LowConfidence
    below twice chance: 2/3 with three classes; the rule is recorded for summary.json."""
    from appliance.result_rows import column_notes, low_confidence_below

    labelled = replace(field("B02", 1, "taxol", 0.3), moa="Eg5 inhibitors")
    rows = [
        field_row(labelled, "", np.array([0.1, 0.2, 0.7]), LABELS, CHANNELS, "abc", "f32"),  # right, sure
        field_row(replace(labelled, site=2), "", np.array([0.4, 0.3, 0.3]), LABELS, CHANNELS, "abc", "f32"),
        field_row(field("C02", 1), "", np.array([0.1, 0.1, 0.8]), LABELS, CHANNELS, "abc", "f32"),  # unknown
    ]
    assert [(r["Metadata_MoA"], r["Classify_Correct"], r["Classify_LowConfidence"]) for r in rows] == [
        ("Eg5 inhibitors", True, False),
        ("Eg5 inhibitors", False, True),  # 0.4 < 2/3
        (None, None, False),
    ]
    assert low_confidence_below(LABELS) == pytest.approx(2 / 3)
    assert low_confidence_below(range(13)) == pytest.approx(2 / 13)  # 0.11 (chance 0.077) is flagged
    wells = well_rows(rows, LABELS)
    assert (wells[0]["Metadata_MoA"], wells[0]["Classify_Correct"]) == ("Eg5 inhibitors", True)  # mean 0.5 Eg5
    assert wells[0]["Classify_LowConfidence"] and wells[1]["Metadata_MoA"] is None
    (taxol,) = treatment_rows(wells, LABELS)
    assert taxol["Metadata_MoA"] == "Eg5 inhibitors" and taxol["Classify_Correct"] is True
    notes = column_notes(LABELS)
    assert notes["low_confidence_below"] == pytest.approx(2 / 3, abs=1e-6) and "uM" in notes["Metadata_Concentration"]


def test_treatments_come_in_natural_order():
    """Case-insensitive, numbers by value, then concentration."""
    names = ["b", "AZ10", "az2", "Taxol", "DMSO", "colchicine"]
    rows = [
        field_row(field(f"B{i + 2:02d}", 1, name, c), "", np.array([0.2, 0.5, 0.3]), LABELS, CHANNELS, "h", "f32")
        for i, (name, c) in enumerate([(n, 1.0) for n in names] + [("az2", 0.3)])
    ]
    order = [
        (t["Metadata_Compound"], t["Metadata_Concentration"]) for t in treatment_rows(well_rows(rows, LABELS), LABELS)
    ]
    assert order == [
        ("az2", 0.3),
        ("az2", 1.0),
        ("AZ10", 1.0),
        ("b", 1.0),
        ("colchicine", 1.0),
        ("DMSO", 1.0),
        ("Taxol", 1.0),
    ]

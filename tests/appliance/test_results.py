"""Result tables from field rows: column names, wells, treatments, precision, atomic writes."""

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest

from appliance.layouts.base import Field
from appliance.results import (field_row, probability_column, treatment_rows, well_rows, write_results)

LABELS = ("Actin disruptors", "DMSO", "Eg5 inhibitors")
CHANNELS = ("DAPI", "Tubulin", "Actin")


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def field(well, site, compound=None, concentration=None, tmp="/x"):
    paths = tuple(f"{tmp}/{well}_s{site}_w{c}.tif" for c in (1, 2, 4))
    return Field("P1", well, site, paths, compound=compound, concentration=concentration)


def test_probability_columns_replace_every_non_alphanumeric_run():
    assert probability_column("Actin disruptors") == "Probability_Actin_disruptors"
    assert probability_column("Cholesterol-lowering") == "Probability_Cholesterol_lowering"
    assert probability_column("a -- b") == "Probability_a_b"


def test_wells_and_treatments_aggregate_with_agreement(tmp_path):
    probs = {("B02", 1): [0.7, 0.2, 0.1], ("B02", 2): [0.2, 0.5, 0.3], ("B02", 3): [0.6, 0.3, 0.1],
             ("B03", 1): [0.1, 0.8, 0.1], ("C02", 1): [0.1, 0.1, 0.8]}
    treatment = {"B02": ("taxol", 0.3), "B03": ("taxol", 0.3), "C02": (None, None)}
    rows = [field_row(field(w, s, *treatment[w]), "", np.array(p), LABELS, CHANNELS, "abc", "bf16")
            for (w, s), p in probs.items()]
    wells = well_rows(rows, LABELS)
    assert [(w["Metadata_Well"], w["Count_Fields"], w["Classify_Class"]) for w in wells] == \
        [("B02", 3, "Actin disruptors"), ("B03", 1, "DMSO"), ("C02", 1, "Eg5 inhibitors")]
    assert wells[0]["Classify_Agreement"] == pytest.approx(2 / 3)
    assert wells[0][probability_column("DMSO")] == pytest.approx(1.0 / 3)
    (taxol,) = treatment_rows(wells, LABELS)  # C02's compound is unknown: no treatment row
    assert (taxol["Metadata_Compound"], taxol["Metadata_Concentration"], taxol["Count_Wells"],
            taxol["Count_Fields"], taxol["Classify_Agreement"]) == ("taxol", 0.3, 2, 4, 0.5)
    assert taxol[probability_column("DMSO")] == pytest.approx((1 / 3 + 0.8) / 2)

    files = write_results(tmp_path, rows, [], LABELS, CHANNELS)
    assert files == {"fields": "fields.csv", "fields_parquet": "fields.parquet", "wells": "wells.csv",
                     "failures": "failures.csv", "treatments": "treatments.csv"}
    written = rows_of(tmp_path / "fields.csv") + rows_of(tmp_path / "wells.csv")
    assert all(r["Model_Precision"] == "bf16" for r in written)
    assert rows_of(tmp_path / "fields.csv")[4]["Metadata_Compound"] == ""
    assert pq.read_table(tmp_path / "fields.parquet").column("Metadata_Compound").to_pylist()[4] is None
    assert list(rows_of(tmp_path / "treatments.csv")[0]) == [
        "Metadata_Compound", "Metadata_Concentration", "Count_Wells", "Count_Fields",
        *(probability_column(label) for label in LABELS), "Classify_Class", "Classify_Confidence",
        "Classify_Agreement"]

    write_results(tmp_path, rows[4:], [], LABELS, CHANNELS)  # no compound known any more
    assert not (tmp_path / "treatments.csv").exists()

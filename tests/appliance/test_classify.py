"""A tiny plate end to end: bad fields land in failures.csv, the rest are classified."""

import csv

import numpy as np
import pytest

from appliance.classify import classify_plate
from appliance.inference import Classifier
from tests.conftest import LABELS, truncate, write_field, write_plate


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def damaged_plate(tmp_path):
    """3 wells x 2 sites: one truncated TIFF, one field without Actin, one field of the wrong size."""
    plate = tmp_path / "Week1_22123"
    written = write_plate(plate)
    truncate(written[("B02", 2)]["Tubulin"])
    written[("B03", 1)]["Actin"].unlink()
    for path in written[("C02", 2)].values():
        path.unlink()
    written[("C02", 2)] = write_field(plate, "C02", 2, np.random.default_rng(1), size=(64, 96))
    return plate, written


@pytest.mark.parametrize("batch_size", [2, 4])
def test_classify_plate(tiny_model, damaged_plate, tmp_path, batch_size):
    plate, written = damaged_plate
    seen = []
    summary = classify_plate(plate, tiny_model, tmp_path / "out", batch_size=batch_size,
                             progress=lambda done, total: seen.append((done, total)))
    assert (summary["plate"], summary["fields"], summary["classified"], summary["failed"]) == ("Week1_22123", 6, 3, 3)
    assert summary["precision"] == "f32" and summary["fields_per_s"] > 0
    assert seen[-1] == (5, 5)  # complete fields read; the one missing a channel never gets that far

    failures = read_csv(summary["out"]["failures"])
    assert [(f["well"], f["site"]) for f in failures] == [("B02", "2"), ("B03", "1"), ("C02", "2")]
    assert failures[0]["file"] == written[("B02", 2)]["Tubulin"].name
    assert "unreadable TIFF" in failures[0]["reason"]
    assert failures[1]["reason"] == "missing channel Actin (w4)"
    assert failures[2]["file"] == written[("C02", 2)]["DAPI"].name
    assert "96x64 (WxH), the model takes 128x128" in failures[2]["reason"]

    fields = read_csv(summary["out"]["fields"])
    assert [(f["well"], f["site"]) for f in fields] == [("B02", "1"), ("B03", "2"), ("C02", "1")]
    assert fields[0]["file_dapi"] == written[("B02", 1)]["DAPI"].name
    for row in fields:
        probs = [float(row[f"prob_{label}"]) for label in LABELS]
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert row["predicted_class"] == LABELS[int(np.argmax(probs))]
        assert float(row["confidence"]) == max(probs)

    wells = read_csv(summary["out"]["wells"])
    assert [(w["well"], w["n_fields"]) for w in wells] == [("B02", "1"), ("B03", "1"), ("C02", "1")]
    for well, field in zip(wells, fields):
        assert [well[f"prob_{label}"] for label in LABELS] == [field[f"prob_{label}"] for label in LABELS]


def test_well_is_the_mean_of_its_fields(tiny_model, tmp_path):
    plate = tmp_path / "plate"
    write_plate(plate, wells=("D07",), sites=(1, 2, 3))
    summary = classify_plate(plate, Classifier(tiny_model), tmp_path / "out", batch_size=2)
    fields, (well,) = read_csv(summary["out"]["fields"]), read_csv(summary["out"]["wells"])
    mean = np.mean([[float(f[f"prob_{label}"]) for label in LABELS] for f in fields], axis=0)
    assert well["n_fields"] == "3"
    np.testing.assert_allclose([float(well[f"prob_{label}"]) for label in LABELS], mean, atol=1e-5)
    assert well["predicted_class"] == LABELS[int(np.argmax(mean))]
    assert read_csv(summary["out"]["failures"]) == []
    assert (tmp_path / "out" / "failures.csv").read_text().strip() == "plate,well,site,file,reason"


def test_refuses_output_inside_the_plate(tiny_model, tmp_path):
    plate = tmp_path / "plate"
    write_plate(plate, wells=("B02",), sites=(1,))
    with pytest.raises(ValueError, match="must not be inside the plate folder"):
        classify_plate(plate, tiny_model, plate / "results")

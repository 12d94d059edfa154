"""The whole path through the CLI at a small size: synth, train, export, classify (torch side)."""

import csv
import json

import pytest
from typer.testing import CliRunner

from appliance.cli import app

runner = CliRunner()
SMALL = "128x256"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_synth_train_export_classify_end_to_end(tmp_path):
    data, heldout, run, results = tmp_path / "data", tmp_path / "heldout", tmp_path / "run", tmp_path / "results"
    assert invoke("synth", data, "--plates", 1, "--fields-per-class", 2, "--size", SMALL).exit_code == 0
    assert invoke("synth", heldout, "--plates", 1, "--fields-per-class", 1, "--size", SMALL, "--seed", 7).exit_code == 0
    result = invoke("train", data, "--out", run, "--epochs", 1, "--batch-size", 4, "--size", SMALL, "--workers", 0)
    assert result.exit_code == 0, result.output
    result = invoke("export", run)
    assert result.exit_code == 0, result.output
    assert (run / "export" / "model.xml").is_file() and (run / "export" / "model.onnx").is_file()

    plate = next(heldout.glob("Week*/Week*_*"))
    broken = sorted(plate.glob("*_w2*.tif"))[0]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated copy from the imager
    result = invoke("classify", plate, "--model", run / "export", "--out", results)
    assert result.exit_code == 1, result.output  # some fields failed
    rows = list(csv.DictReader(open(results / "fields.csv")))
    failures = list(csv.DictReader(open(results / "failures.csv")))
    assert len(rows) == 12 and len(failures) == 1 and failures[0]["File"] == broken.name
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Classify_Class"} <= set(rows[0])
    assert sum(float(v) for k, v in rows[0].items() if k.startswith("Probability_")) == pytest.approx(1, abs=1e-4)
    assert all(float(r["Classify_Distance"]) >= 0 for r in rows)  # the card's training reference, from export
    summary = json.loads((results / "summary.json").read_text())
    flagged = sum(float(r["Classify_Distance"]) > summary["distance"]["threshold"] for r in rows)
    assert summary["distance"]["flagged"] == flagged and (results / "gallery.npz").is_file()
    wells = list(csv.DictReader(open(results / "wells.csv")))
    assert sum(int(w["Count_Fields"]) for w in wells) == 12

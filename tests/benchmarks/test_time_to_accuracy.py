"""benchmarks/time_to_accuracy.py at the smallest field: it trains on the training compounds, validates
on the held-out plate (compounds and a week never trained on), reports the curve and the baseline."""

import json
import subprocess
import sys
from pathlib import Path

from appliance.layouts.bbbc021 import load_fields
from appliance.synth import heldout_compounds

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "time_to_accuracy.py"


def test_time_to_accuracy_validates_on_compounds_and_a_week_never_trained_on(tmp_path):
    result_json = tmp_path / "tta.json"
    command = [sys.executable, SCRIPT, "--workdir", tmp_path, "--size", "128x128", "--plates", "1"]
    command += ["--fields-per-class", "1", "--heldout-fields-per-class", "1", "--epochs", "1", "--workers", "0"]
    command += ["--json", result_json, "--", "--field-norm"]  # options after -- go to train
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stdout + result.stderr[-3000:]  # 1: target not reached
    report = json.loads(result_json.read_text())
    assert len(report["curve"]) == 1 and 0.0 <= report["baseline_accuracy"] <= 1.0
    assert "classic baseline (training/baseline.py), same fields" in result.stdout

    trained, held = load_fields(tmp_path / "data"), load_fields(tmp_path / "heldout")
    assert not {f.compound for f in trained} & set(heldout_compounds(0).values())
    assert {f.compound for f in held} - {"DMSO"} <= set(heldout_compounds(0).values())
    assert not {f.week for f in trained} & {f.week for f in held}
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["fields"]["val"] == len(held) and info["train_config"]["field_norm"] is True

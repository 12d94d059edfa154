"""The demo, shrunk to the tests' size: it keeps what a user needs and removes its checkpoints."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from appliance.cli import app
from export.demo import DemoPlan

ROOT = Path(__file__).resolve().parents[2]
# The demo runs in a child process, as `mcnn-appliance demo` does: in the pytest process, after the
# tests before it, training then scoring the scikit-learn baseline crashed the process (SIGSEGV).
CHILD = """
import json, sys
from pathlib import Path
from rich.console import Console
from export.demo import run_demo
from tests.export.test_demo import TINY_DEMO
print(json.dumps(run_demo(Path(sys.argv[1]), TINY_DEMO, Console(quiet=True)), default=str))
"""


def run_demo_in_child(workdir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(workdir)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


TINY_DEMO = DemoPlan(
    train_plates=1, fields_per_class=1, heldout_fields_per_class=1, epochs=1, size=(128, 128), workers=1
)


def test_the_demo_keeps_model_results_and_curves_and_its_run_scores_on_the_held_out_plate(tmp_path):
    workdir = tmp_path / "demo"
    report = run_demo_in_child(workdir)
    run = workdir / "run"
    assert not (run / "checkpoints").exists() and report["checkpoints_removed_mb"] > 0
    for kept in ("weights.safetensors", "run.json", "metrics.csv", "curves.png", "export/model.xml"):
        assert (run / kept).is_file(), kept
    assert (workdir / "results" / report["heldout_plate"] / "report.html").is_file()
    info = json.loads((run / "run.json").read_text())
    config = info["train_config"]
    assert config["val_data"] == str(workdir / "heldout") and config["data"] == str(workdir / "data")
    assert info["fields"]["val"] == 13  # the held-out plate, validated every epoch
    metrics = list(csv.DictReader(open(run / "metrics.csv")))
    assert metrics[-1]["val_acc"] not in ("", "nan")

    result = CliRunner().invoke(app, ["evaluate", str(run)])  # the validation fields: the held-out plate
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert summary["fields"] == report["heldout_fields"] == 13

    first_run_id = info["run_id"]
    run_demo_in_child(workdir)  # again: the demo's run is replaced, not mixed
    assert json.loads((run / "run.json").read_text())["run_id"] != first_run_id
    assert not (run / "evaluation").exists()

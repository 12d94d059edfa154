"""The demo, shrunk to the tests' size: it keeps what a user needs and removes its checkpoints."""

import json

from rich.console import Console
from typer.testing import CliRunner

from appliance.cli import app
from export.demo import DemoPlan, run_demo

TINY_DEMO = DemoPlan(
    train_plates=1, fields_per_class=1, heldout_fields_per_class=1, epochs=1, size=(128, 128), workers=1
)


def test_the_demo_keeps_model_results_and_curves_and_its_run_scores_on_the_held_out_plate(tmp_path):
    workdir = tmp_path / "demo"
    report = run_demo(workdir, TINY_DEMO, Console(quiet=True))
    run = workdir / "run"
    assert not (run / "checkpoints").exists() and report["checkpoints_removed_mb"] > 0
    for kept in ("weights.safetensors", "run.json", "metrics.csv", "curves.png", "export/model.xml"):
        assert (run / kept).is_file(), kept
    assert (workdir / "results" / report["heldout_plate"] / "report.html").is_file()
    info = json.loads((run / "run.json").read_text())
    assert info["test_data"] == str(workdir / "heldout") and info["train_config"]["data"] == str(workdir / "data")

    result = CliRunner().invoke(app, ["evaluate", str(run)])  # no validation fields: the held-out plate
    assert result.exit_code == 0, result.output
    assert f"its held-out plates instead, the 13 labelled fields of {workdir / 'heldout'}" in result.output
    summary = json.loads((run / "evaluation" / "on-heldout" / "evaluation.json").read_text())
    assert summary["fields"] == report["heldout_fields"] == 13

    first_run_id = info["run_id"]
    run_demo(workdir, TINY_DEMO, Console(quiet=True))  # again: the demo's run is replaced, not mixed
    assert json.loads((run / "run.json").read_text())["run_id"] != first_run_id
    assert not (run / "evaluation").exists()

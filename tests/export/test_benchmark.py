"""The benchmark on the tiny model: every backend's row, accuracy where labels exist, the CLI's JSON."""

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from appliance.cli import app
from appliance.fieldsets import from_folder, from_split, read_raw
from appliance.inference import Classifier
from appliance.synth import write_dataset
from export.benchmark import benchmark, table
from export.eager import eager_predictor
from tests.conftest import LABELS, SIZE

KEYS = {
    "backend",
    "precision",
    "threads",
    "fields_per_s",
    "latency_ms",
    "accuracy",
    "speedup_vs_torch",
    "speedup_vs_best_torch",
    "benchmark_app_fps",
    "fields_per_s_beside_app",
    "of_benchmark_app",
}


def accuracy_by_hand(model_dir, fields, precision: str) -> float:
    """Top-1 % of the exported model on these fields, from its own predictions, not the benchmark's."""
    probabilities, _ = Classifier(model_dir, precision).predict(read_raw(fields, SIZE))
    truth = np.array([LABELS.index(f.moa) for f in fields])
    return round(100 * float((probabilities.argmax(1) == truth).mean()), 2)


def torch_accuracy_by_hand(run_dir, fields, mode: str) -> float:
    predict, _ = eager_predictor(run_dir, mode=mode)
    truth = np.array([LABELS.index(f.moa) for f in fields])
    return round(100 * float((predict(read_raw(fields, SIZE)).argmax(1) == truth).mean()), 2)


def assert_accuracies(rows, model_dir, fields):
    """Every row's accuracy is the model's on these fields: torch, ONNX Runtime and OpenVINO f32 agree
    (the export's parity), bf16 is what the runtime's bf16 Classifier gets, torch bf16 what torch's gets."""
    f32 = accuracy_by_hand(model_dir, fields, "f32")
    expected = {"f32": f32, "bf16": accuracy_by_hand(model_dir, fields, "bf16")}
    torch_bf16 = {"torch eager": "bf16", "torch.compile": "compiled"}
    expected |= {
        b: torch_accuracy_by_hand(model_dir.parent, fields, m)
        for b, m in torch_bf16.items()
        if b in {r["backend"] for r in rows}
    }
    assert [row["accuracy"] for row in rows] == [
        expected[row["backend"]]
        if row["precision"] == "bf16" and row["backend"] in torch_bf16
        else expected[row["precision"]]
        for row in rows
    ], rows
    assert {row["accuracy"] for row in rows if row["precision"] == "f32"} == {f32}


def test_rows_for_every_backend_with_benchmark_app(tiny_model):
    lines = []
    # torch.compile's row: test_torch_compile_row_in_its_own_process (inductor's workers stay out of pytest)
    rows = benchmark(tiny_model, fields=2, app_seconds=1, log=lines.append, torch_modes=("f32", "bf16"))
    assert lines[0].startswith("warning: timing on 2 field(s) per round, fewer than 4")
    pairs = [(r["backend"], r["precision"]) for r in rows]
    assert pairs[-4:] == [("torch eager", "bf16"), ("onnxruntime", "f32"), ("openvino", "f32"), ("openvino", "bf16")]
    assert pairs[:-4] == [("torch eager", "f32")] * len(pairs[:-4]) and 1 <= len(pairs[:-4]) <= 2  # 1 and all threads
    for row in rows:
        assert set(row) == KEYS
        assert row["fields_per_s"] > 0 and row["latency_ms"] > 0
        assert (row["of_benchmark_app"] is not None) == (row["backend"] == "openvino")
        if row["of_benchmark_app"] is not None:  # checkable: the ratio of the two numbers beside it
            ratio = row["fields_per_s_beside_app"] / row["benchmark_app_fps"]
            assert row["of_benchmark_app"] == pytest.approx(ratio, abs=1e-3)
    rendered = Console(width=200, file=io.StringIO())
    rendered.print(table(rows))
    text = rendered.file.getvalue()
    for row in rows[-2:]:
        shown = f"{row['fields_per_s_beside_app']:.2f}/{row['benchmark_app_fps']:.2f}"
        assert f"{row['of_benchmark_app']:.0%} {shown}" in text
    assert max(r["speedup_vs_torch"] for r in rows if r["backend"] == "torch eager" and r["precision"] == "f32") == 1.0
    assert max(r["speedup_vs_best_torch"] for r in rows if r["backend"].startswith("torch")) == 1.0
    val = [f for f in from_split(tiny_model.parent) if f.split == "val"]  # the tiny run's three val fields
    assert len(val) == 3
    assert_accuracies(rows, tiny_model, val)


def test_without_the_run_no_torch_and_no_accuracy(tiny_model, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(tiny_model, export)
    rows = benchmark(export, fields=1, app_seconds=0, log=lambda line: None)
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("onnxruntime", "f32"),
        ("openvino", "f32"),
        ("openvino", "bf16"),
    ]
    assert all(r["accuracy"] is None and r["speedup_vs_torch"] is None is r["speedup_vs_best_torch"] for r in rows)


def test_accuracy_on_a_labelled_folder(tiny_model, tmp_path):
    data = tmp_path / "data"
    write_dataset(data, plates=1, fields_per_class=1, size=(128, 128), seed=2)  # 3 of its 13 classes are the model's
    lines = []
    rows = benchmark(tiny_model, fields=1, data=data, app_seconds=0, log=lines.append, torch_modes=("f32",))
    assert any(f"accuracy on 3 labelled fields of {data}" in line for line in lines)
    labelled = [f for f in from_folder(data) if f.moa in LABELS]
    assert len(labelled) == 3
    assert_accuracies(rows, tiny_model, labelled)


def quick_benchmark(model, *options: str) -> list[str]:
    """`benchmark` arguments for one field a round and no benchmark_app, then the options given."""
    return ["benchmark", str(model), "--fields", "1", "--app-seconds", "0", *options]


def test_cli_writes_the_rows_as_json(tiny_model, tmp_path):
    """--json-out FILE writes the rows beside the table; --json prints them on stdout instead, as in classify."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, quick_benchmark(tiny_model, "--json-out", str(out), "--torch", "f32,bf16"))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and {r["backend"] for r in rows} == {"torch eager", "onnxruntime", "openvino"}
    assert all(set(r) == KEYS for r in rows)
    assert "openvino bf16" in result.stdout
    result = CliRunner().invoke(app, quick_benchmark(tiny_model, "--json", "--torch", "f32,bf16"))
    assert result.exit_code == 0, result.output
    assert [r["backend"] for r in json.loads(result.stdout)] == [r["backend"] for r in rows]


def test_torch_compile_row_in_its_own_process(tiny_model):
    """`benchmark --torch compiled` through the real CLI in a child process: torch.compile (inductor) leaves
    compile workers and global state behind, which the rest of the test session must not share."""
    command = [sys.executable, "-c", "from appliance.cli import app; app(prog_name='mcnn-appliance')"]
    done = subprocess.run(
        [*command, *quick_benchmark(tiny_model, "--json", "--torch", "compiled")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    (compiled,) = [r for r in rows if r["backend"] == "torch.compile"]
    assert compiled["precision"] == "bf16" and compiled["fields_per_s"] > 0 and compiled["latency_ms"] > 0
    assert compiled["accuracy"] is not None and compiled["speedup_vs_best_torch"] == 1.0  # the only torch row

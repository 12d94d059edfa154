"""The training loop end to end on tiny synthetic sets: one process, and two ranks under torchrun."""

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import training.train as train_module
from appliance.cli import app
from appliance.layouts.bbbc021 import load_fields
from appliance.model_card import file_sha256
from appliance.normalization import Normalization
from appliance.synth import write_dataset
from tests.conftest import command_line
from tests.training.conftest import torchrun_the_command
from training.dataset import FieldDataset
from training.model import MCNN, MCNNConfig
from training.recipes import RECIPES, TrainConfig, get_lr, warmup_steps
from training.run import RUN_JSON, WEIGHTS, load_run, save_run
from training.step import evaluate
from training.train import train

TINY = (128, 128)
QUIET = Console(quiet=True)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_writes_a_complete_run(two_per_class, tmp_path, monkeypatch):
    """13 training fields in batches of 4: 3 steps per epoch (the 13th field dropped), each one train_step."""
    steps = []
    real_step = train_module.train_step
    monkeypatch.setattr(train_module, "train_step", lambda *a, **k: steps.append(k) or real_step(*a, **k))
    run = tmp_path / "run"
    result = train(
        TrainConfig(
            data=str(two_per_class), out=str(run), epochs=2, batch_size=4, size=TINY, workers=0, target_acc=0.0
        ),
        console=QUIET,
    )
    assert len(steps) == 6 and all(k["accumulation"] == 1 for k in steps)
    metrics = rows(run / "metrics.csv")
    assert [(int(r["epoch"]), int(r["step"])) for r in metrics] == [(1, 3), (2, 6)]
    for r in metrics:  # accuracies count whole fields: 12 trained on per epoch, 13 validated
        assert float(r["train_acc"]) * 12 == pytest.approx(round(float(r["train_acc"]) * 12), abs=1e-3)
        assert float(r["val_acc"]) * 13 == pytest.approx(round(float(r["val_acc"]) * 13), abs=1e-3)
        assert 0 <= float(r["data_wait"]) < 1
    # steps.csv: every step once, at the learning rate of the schedule (default recipe, 6 steps)
    warmup = warmup_steps(RECIPES["adamw"].warmup_epochs, 3)
    logged = rows(run / "steps.csv")
    assert [int(r["step"]) for r in logged] == [1, 2, 3, 4, 5, 6]
    assert [float(r["lr"]) for r in logged] == pytest.approx([get_lr(s, 6, warmup, 3e-4) for s in range(6)], rel=1e-6)
    assert float(metrics[0]["lr"]) == pytest.approx(float(logged[2]["lr"]), abs=1e-8)  # rounded to 8 places
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((run / "run.json").read_text())
    reached = info["target_reached"]  # any accuracy >= 0: epoch 1
    assert reached["epoch"] == 1 and reached["wall_s"] == float(metrics[0]["wall_s"])
    split = rows(run / "split.csv")
    assert [r["split"] for r in split].count("val") == 13 and len(split) == 26
    assert all(Path(r["path_dapi"]).is_absolute() for r in split)  # export reads them from anywhere
    assert info["model_config"]["height"] == TINY[0] and len(info["labels"]) == 13
    assert info["channels"] == ["DAPI", "Tubulin", "Actin"] and len(info["normalization"]["mean"]) == 3
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # every file written atomically
    _, loaded = load_run(run)  # safetensors, hash checked
    assert loaded["run_id"] == result["run_id"]


def test_tampered_weights_are_refused(tmp_path):
    save_run(tmp_path, MCNN(MCNNConfig(height=TINY[0], width=TINY[1])), {})
    with open(tmp_path / WEIGHTS, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(ValueError, match="SHA-256"):
        load_run(tmp_path)


def test_weights_of_another_layer_layout_are_refused_by_name(tmp_path):
    model = MCNN(MCNNConfig(height=TINY[0], width=TINY[1]))
    info = save_run(tmp_path, model, {})
    renamed = {k.replace("columns.1.body.0.", "columns.1.body.1."): v for k, v in model.state_dict().items()}
    save_file(renamed, str(tmp_path / WEIGHTS))  # as a run from before the pyramid of pools
    info["weights_sha256"] = file_sha256(tmp_path / WEIGHTS)
    (tmp_path / RUN_JSON).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="layer names differ"):
        load_run(tmp_path)


def test_training_learns_the_training_fields(one_per_class, tmp_path):
    """13 small fields, one per class, fitted in 16 epochs: a broken loss, rate or label order fails."""
    result = train(
        TrainConfig(
            data=str(one_per_class),
            out=str(tmp_path / "run"),
            epochs=16,
            batch_size=2,
            size=TINY,
            val_fraction=0.0,
            workers=0,
        ),
        console=QUIET,
    )
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < 0.7 * first["train_loss"] and last["train_acc"] >= 0.4
    assert result["target_reached"] is None  # no validation fields: the target cannot be claimed


def test_two_ranks_under_torchrun_write_one_run(two_per_class, tmp_path):
    """`train --nproc-per-node 2` launches torchrun: DDP over gloo with gradient accumulation (no_sync),
    rank 0 writes, metrics summed over ranks."""
    run = tmp_path / "run"
    options = {"epochs": 1, "batch_size": 1, "accumulation": 2, "lr_scaling": "linear", "nproc_per_node": 2}
    line = command_line("train", two_per_class, out=run, size="128x128", precision="fp32", workers=0, **options)
    result = CliRunner().invoke(app, line)
    assert result.exit_code == 0, result.output
    [row] = rows(run / "metrics.csv")
    assert int(row["step"]) == 3  # 13 fields -> 7 per rank (one padded) -> 3 steps of 2 micro-batches of 1
    model, info = load_run(run)  # the plain model's state dict: no DDP "module." prefix
    assert info["ranks"] == 2 and info["global_batch"] == 4
    assert info["peak_lr"] == pytest.approx(RECIPES["adamw"].lr * 4 / RECIPES["adamw"].lr_reference_batch)
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["ranks"], plan["micro_batch"], plan["accumulation"], plan["global_batch"]) == (2, 1, 2, 4)
    expected = MCNN(MCNNConfig(height=128, width=128, num_classes=13)).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in expected.items()}
    # Validation was split over the ranks and summed: one process on all 13 fields gives the same figures.
    held_out = {(r["plate"], r["well"], int(r["site"])) for r in rows(run / "split.csv") if r["split"] == "val"}
    val = [f for f in load_fields(two_per_class) if (f.plate, f.well, f.site) in held_out]
    norm = Normalization.from_dict(info["normalization"])
    loss_sum, correct, n = evaluate(
        model, torch.utils.data.DataLoader(FieldDataset(val, info["labels"], (128, 128), norm), batch_size=4), "fp32"
    )
    assert n == 13 and float(row["val_loss"]) == pytest.approx(loss_sum / n, abs=1e-4)
    assert float(row["val_acc"]) == pytest.approx(correct / n, abs=1e-4)


def test_the_command_runs_as_ranks_of_a_torchrun_launch(one_per_class, tmp_path):
    """torchrun ... mcnn-appliance train: each rank plans with torchrun's layout; rank 0 writes the run."""
    run = tmp_path / "run"
    train = command_line("train", one_per_class, out=run, epochs=1, global_batch=4, size="128x128", workers=0)
    result = subprocess.run(torchrun_the_command(2, train), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("plan: 1 node(s) x 2 rank(s)") == 1  # printed by rank 0 only
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["ranks"], plan["micro_batch"], plan["accumulation"]) == (2, 2, 1)
    [row] = rows(run / "metrics.csv")
    assert int(row["step"]) == 3 and load_run(run)[1]["ranks"] == 2  # 7 fields per rank -> 3 steps of 2


def test_accumulated_micro_batches_train_as_one_big_batch(one_per_class, tmp_path):
    """2 micro-batches of 2, accumulated, give the weights of batches of 4: the same fields reach
    each step (the shuffle is per field, as are the augmentation draws); fp32 and SGD keep it linear."""

    def run(name, **batching):
        result = train(
            TrainConfig(
                data=str(one_per_class),
                out=str(tmp_path / name),
                epochs=1,
                size=TINY,
                precision="fp32",
                optimizer="sgd",
                lr=0.05,
                val_fraction=0.0,
                workers=0,
                **batching,
            ),
            console=QUIET,
        )
        return load_file(str(tmp_path / name / "weights.safetensors")), result["history"][0]

    big, big_row = run("big", batch_size=4)
    accumulated, accumulated_row = run("accumulated", batch_size=2, accumulation=2)
    torch.manual_seed(0)
    start = MCNN(MCNNConfig(height=TINY[0], width=TINY[1], num_classes=13)).state_dict()
    assert big_row["step"] == accumulated_row["step"] == 3
    assert accumulated_row["train_loss"] == pytest.approx(big_row["train_loss"], abs=1e-5)
    for name, weight in big.items():
        assert (weight - start[name]).abs().max() > 1e-4, name  # every layer moved far more than the tolerance
        torch.testing.assert_close(accumulated[name], weight, rtol=0, atol=1e-6, msg=name)


def test_the_train_command_takes_a_recipe_and_records_it(one_per_class, tmp_path):
    run = tmp_path / "run"
    recipe = {"recipe": "paper", "weight_decay": "1e-4", "clip_grad": "1.0"}
    line = command_line("train", one_per_class, out=run, epochs=1, batch_size=4, size="128x128", workers=0, **recipe)
    result = CliRunner().invoke(app, line)
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    recorded, paper = info["train_config"], RECIPES["paper"]
    assert (recorded["recipe"], recorded["optimizer"], recorded["weight_decay"], recorded["clip_grad"]) == (
        "paper",
        paper.optimizer,
        1e-4,
        1.0,
    )
    assert info["peak_lr"] == pytest.approx(paper.lr * 4 / paper.lr_reference_batch)
    bad = CliRunner().invoke(
        app, ["train", str(one_per_class), "--out", str(tmp_path / "bad"), "--size", "128x128", "--recipe", "lamb"]
    )
    assert bad.exit_code == 2 and "recipe must be one of adamw, paper" in bad.output
    assert not (tmp_path / "bad").exists()


def test_validation_on_other_plates(one_per_class, tmp_path):
    """train --val-data: held-out plates (another week, here another seed's plate) are the validation set,
    every epoch and in `evaluate RUN`; plates shared with the training data, or a split beside it, are refused."""
    other = tmp_path / "other"
    write_dataset(other, plates=1, fields_per_class=1, size=(128, 128), seed=1, first_plate=3)
    run, runner = tmp_path / "run", CliRunner()
    line = command_line(
        "train", one_per_class, out=run, epochs=1, batch_size=4, size="128x128", workers=0, val_data=other
    )
    result = runner.invoke(app, line)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(run / "split.csv")))
    val_plates = {r["plate"] for r in rows if r["split"] == "val"}
    assert val_plates == {f.plate for f in load_fields(other)} and sum(r["split"] == "val" for r in rows) == 13
    assert sum(r["split"] == "train" for r in rows) == 13  # every field of DATA trained on
    metrics = list(csv.DictReader(open(run / "metrics.csv")))
    assert metrics[-1]["val_acc"] not in ("", "nan")
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evaluation" / "evaluation.json").read_text())["fields"] == 13

    same = runner.invoke(app, command_line("train", one_per_class, out=tmp_path / "same", val_data=one_per_class))
    assert same.exit_code == 2 and "is in the training data too" in same.output
    split = runner.invoke(
        app, command_line("train", one_per_class, out=tmp_path / "s", split="nsc", fold=0, val_data=other)
    )
    assert split.exit_code == 2 and "replaces the nsc split" in split.output

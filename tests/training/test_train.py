import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from appliance.cli import app
from appliance.layouts.bbbc021 import load_fields
from appliance.normalization import Normalization
from appliance.synth import write_dataset
from training.data import FieldDataset, stratified_split
from training.run import RUN_JSON, WEIGHTS, load_run, save_run, sha256_of
from training.train import (DEFAULT_RECIPE, RECIPES, TrainConfig, evaluate, get_lr, lr_scale, make_optimizer, peak_lr,
                            resolve_recipe, torchrun_command, train, warmup_steps)
from training.model import MCNN, MCNNConfig

SMALL = (128, 256)
TINY = (128, 128)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    write_dataset(out, plates=1, fields_per_class=3, size=SMALL, seed=1)
    return out


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    write_dataset(out, plates=1, fields_per_class=1, size=TINY, seed=1)  # 13 fields, one per class
    return out


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [get_lr(step, total=20, warmup=4, base=1.0) for step in range(21)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[20] == pytest.approx(0.0)


def test_only_the_wide_linear_layer_learns_slower_at_full_resolution():
    model = MCNN(MCNNConfig())
    assert lr_scale(model.fuse[4]) == pytest.approx((1024 / 81_920) ** 0.5)
    assert lr_scale(model.head) == 1.0 and lr_scale(model.columns[0].body[0]) == 1.0


def test_stratified_split_holds_out_every_class(small_data):
    fields = load_fields(small_data)
    train_fields, val_fields = stratified_split(fields, 0.34, seed=0)
    assert {f.moa for f in val_fields} == {f.moa for f in fields}  # 13 classes, one of three each
    assert len(train_fields) + len(val_fields) == len(fields) and not set(train_fields) & set(val_fields)


def test_train_writes_a_complete_run(small_data, tmp_path):
    run = tmp_path / "run"
    result = train(TrainConfig(data=str(small_data), out=str(run), epochs=2, batch_size=4, size=SMALL,
                               val_fraction=0.34, workers=0, target_acc=0.0), console=Console(quiet=True))
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["data_wait"]) < 1 for r in rows)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reached = json.loads((run / "run.json").read_text())["target_reached"]  # any accuracy >= 0: epoch 1
    assert reached["epoch"] == 1 and reached["wall_s"] == float(rows[0]["wall_s"])
    assert all(float(r["images_per_s"]) > 0 and 0 <= float(r["val_acc"]) <= 1 for r in rows)
    split = list(csv.DictReader(open(run / "split.csv")))
    assert {r["split"] for r in split} == {"train", "val"} and len(split) == 39
    assert all(Path(r["path_dapi"]).is_absolute() for r in split)  # export reads them from anywhere
    info = json.loads((run / "run.json").read_text())
    assert info["model_config"]["height"] == SMALL[0] and len(info["labels"]) == 13
    assert info["channels"] == ["DAPI", "Tubulin", "Actin"] and len(info["normalization"]["mean"]) == 3
    model, loaded = load_run(run)  # safetensors, hash checked
    assert loaded["run_id"] == result["run_id"]


def test_tampered_weights_are_refused(small_data, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(data=str(small_data), out=str(run), epochs=1, batch_size=8, size=SMALL, workers=0),
          console=Console(quiet=True))
    with open(run / "weights.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(ValueError, match="SHA-256"):
        load_run(run)


def test_weights_of_another_layer_layout_are_refused_by_name(tmp_path):
    model = MCNN(MCNNConfig(height=SMALL[0], width=SMALL[1]))
    info = save_run(tmp_path, model, {})
    renamed = {k.replace("columns.1.body.0.", "columns.1.body.1."): v for k, v in model.state_dict().items()}
    save_file(renamed, str(tmp_path / WEIGHTS))  # as a run from before the pyramid of pools
    info["weights_sha256"] = sha256_of(tmp_path / WEIGHTS)
    (tmp_path / RUN_JSON).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="layer names differ"):
        load_run(tmp_path)


def test_training_learns_the_training_fields(tmp_path):
    """13 small fields, one per class, fitted in 8 epochs: a broken loss, rate or label order fails."""
    data = tmp_path / "data"
    write_dataset(data, plates=1, fields_per_class=1, size=SMALL, seed=1)
    result = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=8, batch_size=2, size=SMALL,
                               val_fraction=0.0, workers=0), console=Console(quiet=True))
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < 0.7 * first["train_loss"] and last["train_acc"] >= 0.4
    assert result["target_reached"] is None  # no validation fields: the target cannot be claimed


def test_two_ranks_under_torchrun_write_one_run(tmp_path):
    """`train --nproc-per-node 2` launches torchrun: DDP over gloo with gradient accumulation (no_sync),
    rank 0 writes, metrics summed over ranks."""
    data, run = tmp_path / "data", tmp_path / "run"
    write_dataset(data, plates=1, fields_per_class=2, size=(128, 128), seed=1)  # 13 train + 13 val fields
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "1",
                                      "--accumulation", "2", "--lr-scaling", "linear", "--size", "128x128",
                                      "--precision", "fp32", "--workers", "0", "--nproc-per-node", "2"])
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(open(run / "metrics.csv")))
    assert int(row["step"]) == 3  # 13 fields -> 7 per rank (one padded) -> 3 steps of 2 micro-batches of 1
    model, info = load_run(run)  # the plain model's state dict: no DDP "module." prefix
    assert info["ranks"] == 2 and info["global_batch"] == 4 and info["peak_lr"] == pytest.approx(3e-4 * 4 / 2)
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["ranks"], plan["micro_batch"], plan["accumulation"], plan["global_batch"]) == (2, 1, 2, 4)
    expected = MCNN(MCNNConfig(height=128, width=128, num_classes=13)).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in expected.items()}
    # Validation was split over the ranks and summed: one process on all 13 fields gives the same figures.
    held_out = {(r["plate"], r["well"], int(r["site"])) for r in csv.DictReader(open(run / "split.csv"))
                if r["split"] == "val"}
    val = [f for f in load_fields(data) if (f.plate, f.well, f.site) in held_out]
    norm = Normalization.from_dict(info["normalization"])
    loss_sum, correct, n = evaluate(model, torch.utils.data.DataLoader(
        FieldDataset(val, info["labels"], (128, 128), norm), batch_size=4), "fp32")
    assert n == 13 and float(row["val_loss"]) == pytest.approx(loss_sum / n, abs=1e-4)
    assert float(row["val_acc"]) == pytest.approx(correct / n, abs=1e-4)


def test_the_command_runs_as_ranks_of_a_torchrun_launch(tiny_data, tmp_path):
    """torchrun ... mcnn-appliance train: each rank plans with torchrun's layout; rank 0 writes the run."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
               str(Path(sys.executable).parent / "mcnn-appliance"), "train", str(tiny_data), "--out", str(run),
               "--epochs", "1", "--global-batch", "4", "--size", "128x128", "--workers", "0"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("plan: 1 node(s) x 2 rank(s)") == 1  # printed by rank 0 only
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["ranks"], plan["micro_batch"], plan["accumulation"]) == (2, 2, 1)
    [row] = list(csv.DictReader(open(run / "metrics.csv")))
    assert int(row["step"]) == 3 and load_run(run)[1]["ranks"] == 2  # 7 fields per rank -> 3 steps of 2


def test_several_nodes_need_a_rendezvous_endpoint():
    cfg = TrainConfig(data="d", out="o")
    with pytest.raises(ValueError, match="HOST:PORT"):
        torchrun_command(cfg, 2, nnodes=2)
    command = torchrun_command(cfg, 4, nnodes=2, rdzv_endpoint="node1:29500")
    assert command[command.index("--rdzv-endpoint") + 1] == "node1:29500" and "--standalone" not in command


def test_accumulated_micro_batches_step_as_one_big_batch(tiny_data, tmp_path):
    """2 micro-batches of 2, accumulated, give the weights of batches of 4: the same fields reach
    each step (the shuffle is per field, as are the augmentation draws); fp32 and SGD keep it linear."""
    def run(name, **batching):
        result = train(TrainConfig(data=str(tiny_data), out=str(tmp_path / name), epochs=1, size=TINY,
                                   precision="fp32", optimizer="sgd", lr=0.05, val_fraction=0.0, workers=0,
                                   **batching), console=Console(quiet=True))
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


def test_linear_lr_scaling_is_relative_to_the_reference_batch():
    assert peak_lr(TrainConfig(data="d", out="o", lr=3e-4), global_batch=16) == 3e-4  # off by default
    scaled = TrainConfig(data="d", out="o", lr=3e-4, lr_scaling="linear", lr_reference_batch=2)
    assert peak_lr(scaled, global_batch=16) == pytest.approx(2.4e-3)
    with pytest.raises(ValueError, match="none or linear"):
        peak_lr(TrainConfig(data="d", out="o", lr_scaling="sqrt"), global_batch=16)


def test_a_recipe_sets_the_optimizer_and_schedule_and_set_options_override_it():
    paper = resolve_recipe(TrainConfig(data="d", out="o", recipe="paper"))
    assert (paper.optimizer, paper.lr, paper.lr_scaling, paper.lr_reference_batch, paper.weight_decay,
            paper.warmup_epochs) == ("sgd", 0.01, "linear", 256, 5e-5, 2.0)
    assert peak_lr(paper, global_batch=512) == pytest.approx(0.02)  # 0.01 per 256 fields
    tuned = resolve_recipe(TrainConfig(data="d", out="o", recipe="paper", lr=0.1, warmup_epochs=0.5))
    assert (tuned.optimizer, tuned.lr, tuned.warmup_epochs, tuned.weight_decay) == ("sgd", 0.1, 0.5, 5e-5)
    assert resolve_recipe(TrainConfig(data="d", out="o")).recipe == DEFAULT_RECIPE
    with pytest.raises(ValueError, match="recipe must be one of adamw, paper"):
        resolve_recipe(TrainConfig(data="d", out="o", recipe="lamb"))


def test_the_paper_recipe_builds_nesterov_sgd_with_its_weight_decay_on_weights_only():
    model = MCNN(MCNNConfig(height=TINY[0], width=TINY[1]))
    optimizer = make_optimizer(model, TrainConfig(data="d", out="o", recipe="paper"))
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in optimizer.param_groups)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {5e-5, 0.0}
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups if g["params"][0].ndim == 1)  # biases


def test_warmup_is_given_in_epochs_and_the_demo_keeps_its_four_steps():
    assert warmup_steps(2.0, steps_per_epoch=41) == 82
    assert warmup_steps(0.001, steps_per_epoch=10) == 1 and warmup_steps(0.0, steps_per_epoch=10) == 0
    adamw = RECIPES["adamw"]  # the demo: 104 fields, batch 2 = 52 steps per epoch, tuned with 4 warmup steps
    assert warmup_steps(adamw.warmup_epochs, 52) == 4 and (adamw.lr, adamw.weight_decay) == (3e-4, 0.05)


def test_the_train_command_takes_a_recipe_and_records_it(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(tiny_data), "--out", str(run), "--epochs", "1", "--batch-size", "4",
                                      "--size", "128x128", "--workers", "0", "--recipe", "paper",
                                      "--weight-decay", "1e-4", "--clip-grad", "1.0"])
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    recorded = info["train_config"]
    assert (recorded["recipe"], recorded["optimizer"], recorded["weight_decay"], recorded["clip_grad"]) == \
        ("paper", "sgd", 1e-4, 1.0)
    assert info["peak_lr"] == pytest.approx(0.01 * 4 / 256)
    bad = CliRunner().invoke(app, ["train", str(tiny_data), "--out", str(tmp_path / "bad"), "--size", "128x128",
                                   "--recipe", "lamb"])
    assert bad.exit_code == 2 and "recipe must be one of adamw, paper" in bad.output
    assert not (tmp_path / "bad").exists()


def test_the_demo_pins_the_adamw_recipe_whatever_the_default():
    from export.demo import DemoPlan

    plan = DemoPlan()
    demo = resolve_recipe(TrainConfig(data="d", out="o", recipe=plan.recipe, optimizer=plan.optimizer, lr=plan.lr))
    assert (demo.optimizer, demo.lr, demo.lr_scaling, demo.weight_decay) == ("adamw", 3e-4, "none", 0.05)

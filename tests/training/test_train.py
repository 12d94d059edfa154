import csv
import json

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from appliance.cli import app
from appliance.metadata import load_fields
from appliance.normalization import Normalization
from appliance.synth import write_dataset
from training.data import FieldDataset, stratified_split
from training.run import load_run
from training.train import TrainConfig, evaluate, get_lr, lr_scale, torchrun_command, train
from training.model import MCNN, MCNNConfig

SMALL = (128, 256)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    write_dataset(out, plates=1, fields_per_class=3, size=SMALL, seed=1)
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
                               val_fraction=0.34, workers=0), console=Console(quiet=True))
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["images_per_s"]) > 0 and 0 <= float(r["val_acc"]) <= 1 for r in rows)
    split = list(csv.DictReader(open(run / "split.csv")))
    assert {r["split"] for r in split} == {"train", "val"} and len(split) == 39
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


def test_training_learns_the_training_fields(tmp_path):
    """13 small fields, one per class, fitted in 8 epochs: a broken loss, rate or label order fails."""
    data = tmp_path / "data"
    write_dataset(data, plates=1, fields_per_class=1, size=SMALL, seed=1)
    result = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=8, batch_size=2, size=SMALL,
                               val_fraction=0.0, workers=0), console=Console(quiet=True))
    first, last = result["history"][0], result["history"][-1]
    assert last["train_loss"] < 0.7 * first["train_loss"] and last["train_acc"] >= 0.4


def test_two_ranks_under_torchrun_write_one_run(tmp_path):
    """`train --nproc-per-node 2` launches torchrun: DDP over gloo, rank 0 writes, metrics summed over ranks."""
    data, run = tmp_path / "data", tmp_path / "run"
    write_dataset(data, plates=1, fields_per_class=2, size=(128, 128), seed=1)  # 13 train + 13 val fields
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "2",
                                      "--size", "128x128", "--precision", "fp32", "--workers", "0",
                                      "--nproc-per-node", "2"])
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(open(run / "metrics.csv")))
    assert int(row["step"]) == 3  # 13 fields -> 7 per rank (one padded) -> 3 steps of 2 per rank
    model, info = load_run(run)  # the plain model's state dict: no DDP "module." prefix
    assert info["ranks"] == 2 and info["global_batch"] == 4
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


def test_several_nodes_need_a_rendezvous_endpoint():
    cfg = TrainConfig(data="d", out="o")
    with pytest.raises(ValueError, match="HOST:PORT"):
        torchrun_command(cfg, 2, nnodes=2)
    command = torchrun_command(cfg, 4, nnodes=2, rdzv_endpoint="node1:29500")
    assert command[command.index("--rdzv-endpoint") + 1] == "node1:29500" and "--standalone" not in command

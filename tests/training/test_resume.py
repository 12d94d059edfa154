"""Checkpoints, --resume, torchrun's elastic restarts and the stop on a non-finite loss."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import training.train as train_module
from appliance.cli import app
from tests.conftest import command_line
from tests.training.conftest import torchrun_the_command
from training.checkpoint import (
    STATE_KEY,
    ResumeError,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
)
from training.model import MCNN, MCNNConfig
from training.recipes import TrainConfig
from training.train import train

TINY = (128, 128)  # the smallest field the M-CNN takes
REPRODUCIBLE = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc")  # metrics but timings
QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def data(two_per_class):
    return two_per_class  # 13 training, 13 validation fields


def small_config(data: Path, out: Path, **options) -> TrainConfig:
    """2 epochs of 3 steps (13 fields, batches of 4), a checkpoint every 2 steps; fp32 for exact sums."""
    return replace(
        TrainConfig(
            data=str(data),
            out=str(out),
            epochs=2,
            batch_size=4,
            size=TINY,
            precision="fp32",
            workers=0,
            checkpoint_every=2,
            target_acc=0.0,
        ),
        **options,
    )


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    cfg = small_config(data, tmp_path_factory.mktemp("uninterrupted") / "run")
    train(cfg, console=QUIET)
    return Path(cfg.out)


def rows(path: Path, columns=None) -> list:
    with open(path, newline="") as f:
        return [{c: r[c] for c in columns} if columns else r for r in csv.DictReader(f)]


def test_checkpoints_are_kept_per_step_and_epoch_and_pruned(uninterrupted):
    # steps 2 and 4 are mid-epoch, 3 and 6 epoch ends; the newest two are kept
    assert [checkpoint_step(p) for p in list_checkpoints(uninterrupted)] == [4, 6]
    state = read_checkpoint_state(list_checkpoints(uninterrupted)[-1])
    assert (state["step"], state["epoch"], state["epoch_steps"]) == (6, 3, 0)  # finished: epoch 3 would be next
    assert [r["epoch"] for r in state["history"]] == [1, 2] and state["info"]["run_id"]
    assert [int(r["step"]) for r in rows(uninterrupted / "steps.csv")] == [1, 2, 3, 4, 5, 6]
    assert not list((uninterrupted / "checkpoints").glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("workers, killed_after", [(0, 3), (1, 5)])
def test_a_killed_run_resumes_exactly(data, uninterrupted, tmp_path, workers, killed_after):
    """SIGKILL after a step, --resume from the checkpoint before it: the same losses and the same weights
    as the run that was never stopped (the shuffle, the skipped batches, the optimizer, the schedule). With one
    loader worker against the reference's none: the epoch's augmentation draws reach the worker process."""

    def run_training(cfg: TrainConfig, **env) -> subprocess.CompletedProcess:
        # in a process of its own, as a torchrun rank runs (training/launch.py's entry point, where the
        # kill hook is installed): loader workers never start inside pytest's process
        return subprocess.run(
            [sys.executable, "-m", "training.launch", json.dumps({"config": asdict(cfg)})],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )

    cfg = small_config(data, tmp_path / "run", workers=workers)
    killed = run_training(cfg, MCNN_TEST_KILL_AT=f"0:{killed_after}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [*_, latest] = list_checkpoints(cfg.out)
    assert checkpoint_step(latest) == killed_after - 1  # mid-epoch: 2 of epoch 1's 3 steps, or 1 of epoch 2's
    assert len(rows(Path(cfg.out) / "steps.csv")) == killed_after  # the step after the checkpoint was logged
    run_id = read_checkpoint_state(latest)["info"]["run_id"]

    resumed = run_training(replace(cfg, resume=True))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id} at step {killed_after - 1}" in " ".join(resumed.stderr.split())
    assert rows(Path(cfg.out) / "steps.csv") == rows(uninterrupted / "steps.csv")  # each step once, same loss
    assert rows(Path(cfg.out) / "metrics.csv", REPRODUCIBLE) == rows(uninterrupted / "metrics.csv", REPRODUCIBLE)
    resumed, reference = load_file(f"{cfg.out}/weights.safetensors"), load_file(uninterrupted / "weights.safetensors")
    for name, weight in reference.items():
        assert torch.equal(resumed[name], weight), name
    info = json.loads((Path(cfg.out) / "run.json").read_text())
    assert info["run_id"] == run_id and [r["step"] for r in info["resumes"]] == [killed_after - 1]


@pytest.mark.parametrize(
    "checkpoint_every, stopped_at, what", [(0, 5, "the loss is nan"), (1, 4, "the weights are not finite")]
)
def test_a_non_finite_loss_stops_the_run_and_keeps_the_good_checkpoints(
    data, tmp_path, monkeypatch, checkpoint_every, stopped_at, what
):
    """An infinite learning rate from the 4th step on: its update makes the weights infinite, the 5th step's
    loss NaN. Caught before a checkpoint (every step) or at the loss (only epoch ends), naming the step."""
    schedule = train_module.get_lr
    monkeypatch.setattr(train_module, "get_lr", lambda step, *args: math.inf if step >= 3 else schedule(step, *args))
    cfg = small_config(data, tmp_path / "run", checkpoint_every=checkpoint_every)
    with pytest.raises(FloatingPointError, match=f"{what} at step {stopped_at} \\(epoch 2\\)") as stopped:
        train(cfg, console=QUIET)
    [*_, latest] = list_checkpoints(cfg.out)
    assert checkpoint_step(latest) == 3 and str(latest) in str(stopped.value)  # epoch 1's end
    assert all(torch.isfinite(w).all() for w in load_file(latest).values())
    assert json.loads((Path(cfg.out) / "stopped.json").read_text())["step"] == stopped_at
    with pytest.raises(ResumeError, match="Resuming would repeat it"):
        train(replace(cfg, resume=True), console=QUIET)


def cli_options(data: Path, out: Path, **changes) -> list[str]:
    """`train` options equal to small_config's, but for `changes`."""
    options = dict(epochs=2, batch_size=4, size="128x128", precision="fp32", workers=0, checkpoint_every=2)
    return command_line("train", data, out=out, **{**options, "target_acc": 0, **changes})


def test_resume_refuses_a_run_without_checkpoints_or_with_other_options(data, uninterrupted, tmp_path):
    result = CliRunner().invoke(app, [*cli_options(data, tmp_path / "new"), "--resume"])
    assert result.exit_code == 2 and "no checkpoint in" in result.output
    result = CliRunner().invoke(app, cli_options(data, tmp_path / "new", max_restarts=1))
    assert result.exit_code == 2 and "needs --nproc-per-node" in " ".join(result.output.split())
    result = CliRunner().invoke(app, [*cli_options(data, uninterrupted, lr=0.001, epochs=3), "--resume"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich wraps lines
    assert "options differ from the run's: epochs: 2 -> 3; lr: 0.0003 -> 0.001." in message
    before = rows(uninterrupted / "metrics.csv")
    result = CliRunner().invoke(app, [*cli_options(data, uninterrupted, workers=1), "--resume"])
    assert result.exit_code == 0, result.output  # finished already; workers may differ: nothing to do
    assert "resuming run" in result.output and rows(uninterrupted / "metrics.csv") == before


def test_torchrun_restarts_a_killed_rank_and_the_run_finishes(data, tmp_path):
    """Rank 1 SIGKILLed after step 2 on torchrun's first attempt: torchrun restarts both ranks (--max-restarts),
    they resume from the last checkpoint and finish as a run never stopped; every epoch and step appears once."""

    def launch(run: Path, **env) -> subprocess.CompletedProcess:
        command = [
            str(Path(sys.executable).parent / "mcnn-appliance"),
            *cli_options(data, run, checkpoint_every=1, batch_size=2, nproc_per_node=2, max_restarts=1),
        ]
        return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)

    run, reference = tmp_path / "run", tmp_path / "reference"
    result = launch(run, MCNN_TEST_KILL_AT="1:2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming run" in result.stderr
    assert launch(reference).returncode == 0
    assert rows(run / "steps.csv") == rows(reference / "steps.csv")
    assert rows(run / "metrics.csv", REPRODUCIBLE) == rows(reference / "metrics.csv", REPRODUCIBLE)
    resumed, uninterrupted = load_file(run / "weights.safetensors"), load_file(reference / "weights.safetensors")
    assert all(torch.equal(resumed[name], weight) for name, weight in uninterrupted.items())
    assert [int(r["epoch"]) for r in rows(run / "metrics.csv")] == [1, 2]
    assert [int(r["step"]) for r in rows(run / "steps.csv")] == [1, 2, 3, 4, 5, 6]  # 7 fields per rank, 3 steps
    info = json.loads((run / "run.json").read_text())
    [resume] = info["resumes"]
    assert resume["elastic_restart"] and resume["step"] in (1, 2)  # rank 0 may be stopped writing step 2's
    assert info["epochs_done"] == 2 and info["ranks"] == 2


def test_ranks_of_a_torchrun_you_launch_resume_after_its_restart(data, tmp_path):
    """torchrun --max-restarts 1 --no-python mcnn-appliance train ...: the restarted ranks resume by themselves."""
    run = tmp_path / "run"
    command = torchrun_the_command(2, cli_options(data, run, checkpoint_every=1, batch_size=2), max_restarts=1)
    result = subprocess.run(command, env={**os.environ, "MCNN_TEST_KILL_AT": "1:4"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [int(r["epoch"]) for r in rows(run / "metrics.csv")] == [1, 2]
    assert [int(r["step"]) for r in rows(run / "steps.csv")] == [1, 2, 3, 4, 5, 6]
    [resume] = json.loads((run / "run.json").read_text())["resumes"]
    assert resume["elastic_restart"] and resume["step"] in (3, 4)


def test_a_checkpoint_of_another_layer_layout_is_refused_by_name(uninterrupted, tmp_path):
    """As a checkpoint from before the pyramid of pools: column 1's first convolution was layer 1, not 0."""
    [*_, latest] = list_checkpoints(uninterrupted)
    tensors = {k.replace("model.columns.1.body.0.", "model.columns.1.body.1."): v for k, v in load_file(latest).items()}
    old = tmp_path / latest.name
    save_file(tensors, str(old), metadata={STATE_KEY: json.dumps(read_checkpoint_state(latest))})
    model = MCNN(MCNNConfig(height=TINY[0], width=TINY[1]))
    with pytest.raises(ResumeError, match="layer names differ"):
        load_checkpoint(old, model, torch.optim.AdamW(model.parameters()))

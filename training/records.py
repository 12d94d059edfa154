"""What a run records about itself as it trains (rank 0 writes it): run.json's content, and the tables
metrics.csv (a row per epoch) and steps.csv (a row per optimizer step).

run.py writes run.json with the weights; checkpoint.py keeps what a resumed run continues from.
"""

from __future__ import annotations

import platform
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

import appliance
from appliance.layouts.base import CHANNELS
from training.dataset import Data
from training.distributed import Ranks, restarted
from training.recipes import TrainConfig
from training.tables import append_row, read_csv, write_dicts

METRICS_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "images_per_s",
    "data_wait",
    "epoch_s",
    "wall_s",
)  # data_wait: fraction of the epoch
STEPS_COLUMNS = ("step", "epoch", "loss", "lr")  # steps.csv: every optimizer step's loss (mean over its fields)
METRICS_CSV, STEPS_CSV = "metrics.csv", "steps.csv"


@dataclass(frozen=True)
class Setup:
    """How this process trains, settled before the first step: printed, and recorded in run.json."""

    precision: str  # what the steps compute in: bf16 or fp32
    threads: int  # compute threads of each rank
    allocator: str
    global_batch: int  # fields per optimizer step over all ranks
    peak_lr: float


def run_info(cfg: TrainConfig, ranks: Ranks, data: Data, setup: Setup, resumed: dict | None) -> dict:
    """run.json's content: a new run's, or the resumed run's (its id, its time to accuracy) with the resume added."""
    config = {**asdict(cfg), "size": list(cfg.size)}
    if resumed:
        return {
            **resumed["info"],
            "train_config": config,
            "threads": setup.threads,
            "allocator": setup.allocator,
            "resumes": resumed["info"].get("resumes", [])
            + [
                {
                    "step": resumed["step"],
                    "at": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
                    "elastic_restart": restarted(),
                }
            ],
        }
    return {
        "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "labels": data.labels,
        "channels": list(CHANNELS),
        "normalization": data.normalization.to_dict(),
        "train_config": config,
        "precision": setup.precision,
        "threads": setup.threads,
        "allocator": setup.allocator,
        "ranks": ranks.world,
        "global_batch": setup.global_batch,
        "peak_lr": setup.peak_lr,
        "fields": {"train": data.train_fields, "val": data.val_fields},
        "versions": {
            "mcnn_appliance": appliance.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def start_tables(out: Path, history: list[dict], step: int, resumed: bool) -> None:
    """metrics.csv and steps.csv as the run starts: a resumed run's cut back to its checkpoint (history,
    step), so that every epoch and every step appears once."""
    write_dicts(out / METRICS_CSV, METRICS_COLUMNS, history)
    kept = [r for r in read_csv(out / STEPS_CSV) if int(r["step"]) <= step] if resumed else []
    write_dicts(out / STEPS_CSV, STEPS_COLUMNS, kept)


def log_step(out: Path, step: int, epoch: int, loss: float, lr: float) -> None:
    append_row(out / STEPS_CSV, [step, epoch, f"{loss:.7g}", f"{lr:.7g}"])


def metrics_row(epoch: int, step: int, lr: float, totals: list[float], epoch_s: float, wall_s: float) -> dict:
    """metrics.csv's row from the epoch's sums over all ranks: training's, then validation's."""
    loss_sum, correct, seen, wait_sum, epoch_sum, val_loss_sum, val_correct, val_seen = totals
    val_loss, val_acc = (val_loss_sum / val_seen, val_correct / val_seen) if val_seen else (float("nan"),) * 2
    return {
        "epoch": epoch,
        "step": step,
        "lr": round(lr, 8),
        "train_loss": round(loss_sum / seen, 5),
        "train_acc": round(correct / seen, 4),
        "val_loss": round(val_loss, 5),
        "val_acc": round(val_acc, 4),
        "images_per_s": round(seen / epoch_s, 3),
        "data_wait": round(wait_sum / epoch_sum, 3),
        "epoch_s": round(epoch_s, 1),
        "wall_s": round(wall_s, 1),
    }


def write_metrics(out: Path, history: list[dict]) -> Path:
    return write_dicts(out / METRICS_CSV, METRICS_COLUMNS, history)

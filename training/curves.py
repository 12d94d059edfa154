"""The run's learning curves, drawn from metrics.csv: loss and accuracy against wall time.

Time to accuracy is the paper's headline, so the x axis is minutes of wall time, and the
target accuracy is drawn as a line.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

from appliance.files import write_atomically
from training.tables import read_csv

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402


def draw_curves(metrics_csv: Path, png: Path, target_acc: float | None = None) -> Path:
    rows = read_csv(metrics_csv)
    minutes = [float(r["wall_s"]) / 60 for r in rows]

    def column(name: str) -> list[float]:
        return [float(r[name]) for r in rows]

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(minutes, column("train_loss"), "o-", label="train")
    if not all(math.isnan(v) for v in column("val_loss")):
        loss_ax.plot(minutes, column("val_loss"), "o-", label="validation")
    loss_ax.set(xlabel="wall time (min)", ylabel="cross-entropy", title="loss")
    acc_ax.plot(minutes, column("train_acc"), "o-", label="train")
    if not all(math.isnan(v) for v in column("val_acc")):
        acc_ax.plot(minutes, column("val_acc"), "o-", label="validation")
    if target_acc:
        acc_ax.axhline(target_acc, color="grey", linestyle="--", label=f"target {target_acc:.0%}")
    acc_ax.set(xlabel="wall time (min)", ylabel="field accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    write_atomically(png, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return png

"""Time to accuracy under NSC: train from scratch at full resolution and validate every epoch on a
held-out plate of compounds the training never shows, imaged in a week it never saw.

    .venv/bin/python benchmarks/time_to_accuracy.py [--workdir tta] [--target-acc 0.9] [--budget-min 60]
    .venv/bin/python benchmarks/time_to_accuracy.py --size 256x384 --epochs 4  # a quick check
    .venv/bin/python benchmarks/time_to_accuracy.py -- --lr 1e-3 --field-norm  # more train options after --

Synthesises `--plates` training plates (`--fields-per-class` fields per class each, the training
compounds) and one held-out plate (`--heldout-fields-per-class`, one compound of every class with
two or more, never trained on; docs/synthetic.md), then runs `mcnn-appliance train --val-data
HELDOUT` with the default recipe. train records in run.json the epoch and wall time at which
validation first reaches `--target-acc` and redraws curves.png each epoch; this script watches
run.json and stops training at the target or when the wall-clock budget is spent, whichever comes
first, then prints the time to accuracy, the curve (epoch, wall time, held-out accuracy) and the
classic baseline (training/baseline.py) on the same fields. Exit code 0: target reached; 1: not; 2: train failed.
The data is written once and reused by later runs with the same --workdir; the run folder is
replaced each time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages of this checkout

from benchmarks.heldout_plates import heldout_plates  # noqa: E402
from benchmarks.machine import announce  # noqa: E402


def stop(process: subprocess.Popen) -> None:
    """End the training command and its data-loading workers (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (it is replaced atomically)
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("tta"))
    parser.add_argument("--size", default="1024x1280")
    parser.add_argument("--plates", type=int, default=2)
    parser.add_argument("--fields-per-class", type=int, default=8, help="per plate; 13 classes")
    parser.add_argument("--heldout-fields-per-class", type=int, default=4)
    parser.add_argument("--target-acc", type=float, default=0.9)
    parser.add_argument("--budget-min", type=float, default=60.0, help="wall-clock budget of training")
    parser.add_argument("--epochs", type=int, default=20, help="the schedule's length (cosine decay to zero)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="processes for synth and data loading")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--no-baseline", action="store_true", help="do not score the classic baseline")
    args, train_options = parser.parse_known_args()
    train_options = [o for o in train_options if o != "--"]
    size = tuple(int(v) for v in args.size.split("x"))
    announce()

    data, heldout = heldout_plates(args.workdir, args, size)
    run = args.workdir / "run"
    if run.exists():  # a previous run's target and curve must not count
        shutil.rmtree(run)

    command = [
        str(Path(sys.executable).parent / "mcnn-appliance"),
        "train",
        str(data),
        "--out",
        str(run),
        "--epochs",
        str(args.epochs),
        "--size",
        args.size,
        "--batch-size",
        str(args.batch_size),
        "--target-acc",
        str(args.target_acc),
        "--workers",
        str(args.workers),
        "--val-data",
        str(heldout),
        *train_options,
    ]
    print(" ".join(command), flush=True)
    log = open(args.workdir / "train.log", "w")
    start = time.time()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    reason = "training ended"
    try:
        while process.poll() is None:
            time.sleep(2)
            if "target_reached" in read_json(run / "run.json"):
                reason = "target reached"
                break
            if time.time() - start > args.budget_min * 60:
                reason = f"budget of {args.budget_min:g} min spent"
                break
    finally:
        stop(process)
        log.close()
    wall = time.time() - start
    if process.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
        print(f"train failed (exit {process.returncode}); see {args.workdir / 'train.log'}", file=sys.stderr)
        sys.exit(2)  # 1 means the target was not reached

    info = read_json(run / "run.json")
    reached = info.get("target_reached")
    curve = []
    if (run / "metrics.csv").is_file():
        with open(run / "metrics.csv", newline="") as f:
            curve = [
                {
                    "epoch": int(r["epoch"]),
                    "wall_s": float(r["wall_s"]),
                    "val_acc": float(r["val_acc"]),
                    "train_loss": float(r["train_loss"]),
                    "images_per_s": float(r["images_per_s"]),
                }
                for r in csv.DictReader(f)
            ]
    print(f"\nstopped: {reason} after {wall / 60:.1f} min")
    if info:
        recipe = info["train_config"]
        print(
            f"{size[0]}x{size[1]}, {info['fields']['train']} training / {info['fields']['val']} held-out fields, "
            f"recipe {recipe['recipe']} ({recipe['optimizer']}, peak lr {info['peak_lr']:g}), "
            f"global batch {info['global_batch']}"
        )
    else:
        print("no epoch finished")
    print(f"{'epoch':>5} {'wall min':>8} {'held-out':>8} {'train loss':>10} {'img/s':>6}")
    for r in curve:
        print(
            f"{r['epoch']:>5} {r['wall_s'] / 60:>8.1f} {r['val_acc']:>8.3f} {r['train_loss']:>10.3f} "
            f"{r['images_per_s']:>6.2f}"
        )
    if reached:
        print(
            f"time to {args.target_acc:.0%} held-out accuracy: {reached['wall_s'] / 60:.1f} min "
            f"(epoch {reached['epoch']}, step {reached['step']}; train's clock, from its start)"
        )
    else:
        print(
            f"target {args.target_acc:.0%} NOT reached (best val acc "
            f"{max((r['val_acc'] for r in curve), default=float('nan')):.3f})"
        )
    classic = None
    if not args.no_baseline:
        from export.demo import baseline_accuracy  # scikit-image/-learn: the train extra

        start = time.time()
        classic = baseline_accuracy(data, heldout, size, seed=0)
        print(f"classic baseline (training/baseline.py), same fields: {classic:.3f} ({time.time() - start:.0f} s)")
    print(f"curves: {run / 'curves.png'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": list(size),
                    "target_acc": args.target_acc,
                    "reason": reason,
                    "wall_s": round(wall, 1),
                    "target_reached": reached,
                    "curve": curve,
                    "baseline_accuracy": classic,
                    "run": str(run),
                },
                indent=2,
            )
        )
    sys.exit(0 if reached else 1)


if __name__ == "__main__":
    main()

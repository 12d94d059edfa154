"""The `train` command's cost per field against the bare training step's, in one run (target: within 10 %).

    .venv/bin/python benchmarks/train_vs_step.py [--size 1024x1280] [--batch 4] [--epochs 3] [--fields-per-class 2]

The step: benchmarks/train_throughput.py's tuned variant (random tensors already in memory, the same
model, optimizer, precision and threads as `train`), seconds per field. The command: the real
`mcnn-appliance train` on a synthetic dataset at the same size (3 plates x 13 classes x
--fields-per-class), its own defaults otherwise (TIFF decoding, normalisation, metrics,
validation, checkpoints). From its metrics.csv, per training field:
    steps only    epoch_s / fields: the loop's steps with data loading
    whole epoch   wall_s difference between consecutive epochs / fields: also validation, curves,
                  run.json and the end-of-epoch checkpoint
The first epoch (start-up, first-call kernel builds) is left out; the median over later epochs is shown.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.synth import write_dataset
from benchmarks.machine import cpu_description, cpu_line
from benchmarks.train_throughput import run_child

SCRIPT = Path(sys.executable).with_name("mcnn-appliance")
TARGET = 1.10


def train_command(data: Path, out: Path, size: str, batch: int, epochs: int) -> list[dict]:
    command = [str(SCRIPT), "train", str(data), "--out", str(out), "--size", size]
    subprocess.run([*command, "--batch-size", str(batch), "--epochs", str(epochs)], check=True)
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1024x1280")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fields-per-class", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is left out")
    cpu = cpu_description()
    print(cpu_line(cpu))
    size = tuple(int(v) for v in args.size.split("x"))
    step = run_child(
        "--child", "tuned", "--size", args.size, "--batch", str(args.batch), "--warmup", "2", "--steps", "3"
    )
    print(f"bare step ({step['precision']}, {step['threads']} threads): {step['s_per_image']:.3f} s/field")
    with tempfile.TemporaryDirectory(prefix="train-vs-step-") as tmp:
        data = Path(tmp) / "data"
        write_dataset(data, plates=3, fields_per_class=args.fields_per_class, size=size, seed=0, workers=2)
        rows = train_command(data, Path(tmp) / "run", args.size, args.batch, args.epochs)
    later = rows[1:]
    fields = [float(r["images_per_s"]) * float(r["epoch_s"]) for r in later]  # training fields per epoch
    steps_only = statistics.median(float(r["epoch_s"]) / n for r, n in zip(later, fields))
    whole = statistics.median((float(b["wall_s"]) - float(a["wall_s"])) / n for a, b, n in zip(rows, later, fields))
    figures = {"cpu": cpu, "step_s_per_field": step["s_per_image"], "train_steps_s_per_field": steps_only}
    figures["train_epoch_s_per_field"] = whole
    for name, value in (("train, steps only", steps_only), ("train, whole epoch", whole)):
        ratio = value / step["s_per_image"]
        print(
            f"{name}: {value:.3f} s/field = {ratio:.2f}x the bare step (target <= {TARGET:.2f}) "
            + ("met" if ratio <= TARGET else "NOT met")
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

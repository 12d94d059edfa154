"""Peak memory of M-CNN training steps, per field: the figures behind training/plan.py.

    .venv/bin/python benchmarks/train_memory.py --size 256x512 [--batches 1 3] [--steps 2]

For each precision and micro-batch, a fresh process builds the model, optimizer and loss as train()
does, runs `--steps` of train's step (training/step.py's train_step: channels_last, autocast,
backward, optimizer step) on random fields and reads its peak resident memory (VmHWM). Per
field = difference of the peaks / difference of the batch sizes; fixed = the peak at the
smallest batch minus its fields. Prints JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training package of this checkout

from benchmarks.machine import announce  # noqa: E402

GB = 1024**3


def peak_rss_gb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb * 1024 / GB


def child(precision: str, size: tuple[int, int], batch: int, steps: int) -> dict:
    import torch

    from training.model import MCNN, MCNNConfig, count_parameters
    from training.process import keep_freed_memory
    from training.recipes import TrainConfig, make_loss, make_optimizer, peak_lr
    from training.step import as_model_input, train_step

    keep_freed_memory()  # as train() does: the heap keeps its high-water mark
    torch.manual_seed(0)
    cfg = TrainConfig(data="", out="", size=size, precision=precision)
    model = MCNN(MCNNConfig(height=size[0], width=size[1])).to(memory_format=torch.channels_last)
    optimizer, loss_fn = make_optimizer(model, cfg), make_loss(cfg)
    # cast once, as train_step casts each loaded batch (the fp32 copy is freed): its cast is then a no-op
    x = as_model_input(torch.randn(batch, 3, *size), precision)
    batches = itertools.repeat((x, torch.randint(0, 13, (batch,))))
    for _ in range(steps):
        train_step(model, optimizer, loss_fn, batches, peak_lr(cfg, batch), precision=precision)
    return {
        "precision": precision,
        "size": list(size),
        "batch": batch,
        "parameters": count_parameters(model),
        "peak_gb": round(peak_rss_gb(), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--batches", type=int, nargs=2, default=[1, 3])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        print(json.dumps(child(args.precision[0], size, args.batches[0], args.steps)))
        return
    announce()
    rows = []
    for precision in args.precision:
        peaks = {}
        for batch in args.batches:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--size",
                    args.size,
                    "--precision",
                    precision,
                    "--batches",
                    str(batch),
                    "0",
                    "--steps",
                    str(args.steps),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            peaks[batch] = json.loads(out.strip().splitlines()[-1])
        (small, a), (large, b) = sorted(peaks.items())
        per_field = (b["peak_gb"] - a["peak_gb"]) / (large - small)
        rows.append(
            {
                "precision": precision,
                "size": list(size),
                "parameters": a["parameters"],
                "peaks_gb": {k: v["peak_gb"] for k, v in peaks.items()},
                "per_field_gb": round(per_field, 4),
                "fixed_gb": round(a["peak_gb"] - small * per_field, 4),
            }
        )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

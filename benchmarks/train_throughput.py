"""Training throughput and peak memory, naive against tuned, side by side in one run.

    .venv/bin/python benchmarks/train_throughput.py [--size 1024x1280] [--batch 2] [--warmup 2] [--steps 3] [--json F]

Two variants of the same training step (model, optimizer and loss as train() builds them, on
random fields of a fixed micro-batch):

    naive   fp32, NCHW tensors, torch's default threads, no thread pinning
    tuned   what train() does by default: bf16 autocast where the CPU has native bf16,
            channels_last, intra-op threads = the cores this process may use (its affinity
            mask, as train() sets them), one inter-op thread. (OMP_PROC_BIND is not used: with
            libgomp it pins the main thread to one core at import, and train() then sees 1 core.)

Each variant runs in its own fresh process (its peak RSS is that child's getrusage ru_maxrss), does `--warmup` untimed steps, then `--steps` timed ones. The variants
run alternately, `--rounds` times each, and the median seconds per image is reported, so a
neighbour's load hits both alike. Prints a table (and --json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training package of this checkout

GB = 1024 ** 3
VARIANTS = ("naive", "tuned")


def child(variant: str, size: tuple[int, int], batch: int, warmup: int, steps: int) -> dict:
    import torch
    from torch import nn

    from training.model import MCNN, MCNNConfig
    from training.run import set_threads
    from training.train import TrainConfig, make_optimizer, resolve_precision, resolve_recipe

    tuned = variant == "tuned"
    if tuned:
        threads = set_threads()
        torch.set_num_interop_threads(1)
    else:
        threads = torch.get_num_threads()
    precision = resolve_precision("auto") if tuned else "fp32"
    layout = torch.channels_last if tuned else torch.contiguous_format
    cfg = resolve_recipe(TrainConfig(data="", out="", size=size))
    torch.manual_seed(0)
    model = MCNN(MCNNConfig(height=size[0], width=size[1])).to(memory_format=layout)
    optimizer = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    x = torch.randn(batch, 3, *size).contiguous(memory_format=layout)
    y = torch.randint(0, 13, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {"variant": variant, "precision": precision, "channels_last": tuned, "threads": threads,
            "s_per_image": seconds / (steps * batch),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB}  # Linux: kB


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """One fresh process per measurement, so the peak RSS it reports is its own."""
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--size", args.size, "--batch", str(args.batch),
                          "--warmup", str(args.warmup), "--steps", str(args.steps)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1024x1280")
    parser.add_argument("--batch", type=int, default=2, help="micro-batch of every step")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per variant (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        print(json.dumps(child(args.child, size, args.batch, args.warmup, args.steps)))
        return

    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            runs[variant].append(run_variant(variant, args))
    rows = []
    for variant in VARIANTS:
        first = runs[variant][0]
        rows.append({"variant": variant, "precision": first["precision"], "channels_last": first["channels_last"],
                     "threads": first["threads"],
                     "s_per_image": round(statistics.median(r["s_per_image"] for r in runs[variant]), 4),
                     "s_per_image_each_round": [round(r["s_per_image"], 4) for r in runs[variant]],
                     "peak_rss_gb": round(max(r["peak_rss_gb"] for r in runs[variant]), 3)})
    naive, tuned = rows
    speedup = naive["s_per_image"] / tuned["s_per_image"]
    result = {"size": list(size), "batch": args.batch, "warmup": args.warmup, "steps": args.steps,
              "rounds": args.rounds, "cores": len(os.sched_getaffinity(0)), "rows": rows,
              "speedup_tuned_vs_naive": round(speedup, 2),
              "targets": {"tuned_s_per_image_max": 0.40, "speedup_min": 4.0,
                          "tuned_s_per_image_met": tuned["s_per_image"] <= 0.40, "speedup_met": speedup >= 4.0}}

    print(f"training step at {size[0]}x{size[1]}, micro-batch {args.batch}, {args.warmup} warm-up + {args.steps} "
          f"timed steps, {args.rounds} round(s), {result['cores']} cores")
    print(f"{'variant':<8} {'precision':<9} {'layout':<14} {'threads':>7} {'s/image':>8} {'peak RSS GB':>11}")
    for r in rows:
        layout = "channels_last" if r["channels_last"] else "NCHW"
        print(f"{r['variant']:<8} {r['precision']:<9} {layout:<14} {r['threads']:>7} {r['s_per_image']:>8.3f} "
              f"{r['peak_rss_gb']:>11.2f}")
    print(f"tuned vs naive: {speedup:.2f}x faster (target >= 4x: {'met' if speedup >= 4 else 'NOT met'}); "
          f"tuned {tuned['s_per_image']:.3f} s/image (target <= 0.40: "
          f"{'met' if tuned['s_per_image'] <= 0.40 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

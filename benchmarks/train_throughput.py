"""Training throughput and peak memory, naive against tuned, side by side in one run, and
both against the machine's own bf16 and fp32 matrix-multiply peak.

    .venv/bin/python benchmarks/train_throughput.py [--size 1024x1280] [--batch 4] [--warmup 2] [--steps 3]
                                                    [--rounds 2] [--json F]

Three variants of the same training step (train's own: training/step.py's train_step, with the
model, recipe and loss as train() builds them, on random fields of a fixed micro-batch; default:
train's default micro-batch):

    naive   fp32, NCHW tensors, torch's default threads and its default optimizer
            implementation, no thread pinning
    tuned   what train() does by default: bf16 autocast where the CPU has native bf16 (the
            field cast to bf16 once), channels_last, the fused optimizer, malloc keeping freed
            memory for the next step (training/process.py), intra-op threads =
            the cores this process may use (its affinity mask, as train() sets them), one
            inter-op thread. (OMP_PROC_BIND is not used: with libgomp it pins the main thread
            to one core at import, and train() then sees 1 core.)
    tuned_default_malloc
            tuned, but with malloc's default behaviour (freed activations go back to the
            kernel): what keeping freed memory is worth, in time and in memory

Each variant runs in its own fresh process (its peak RSS is that child's getrusage ru_maxrss),
does `--warmup` untimed steps, then `--steps` timed ones. The variants run alternately,
`--rounds` times each, and the median seconds per image is reported, so a neighbour's load hits
both alike.

What the machine could do at best, measured in the same run: the step's floating-point work
per image (torch's FlopCounterMode), the bf16 and fp32 GEMM rates on the same threads (a
4096^3 torch.matmul), hence the floor "work / bf16 GEMM peak" no implementation can beat,
and for each variant the time its convolutions alone take (torch.profiler, one extra step).
Prints a table (and --json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training package of this checkout

from benchmarks.machine import cpu_description, cpu_line  # noqa: E402

GB = 1024**3
VARIANTS = ("naive", "tuned_default_malloc", "tuned")
CONV_OPS = (
    "aten::mkldnn_convolution",
    "aten::convolution_backward",
    "aten::_slow_conv2d_forward",
    "aten::_slow_conv2d_backward",
    "aten::mkldnn_convolution_backward",
)  # where oneDNN's kernels run


def child(variant: str, size: tuple[int, int], batch: int, warmup: int, steps: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from training.model import MCNN, MCNNConfig
    from training.process import keep_freed_memory, set_threads
    from training.recipes import TrainConfig, make_loss, make_optimizer, peak_lr, resolve_recipe
    from training.step import as_model_input, resolve_precision, train_step

    tuned = variant != "naive"
    if tuned:
        threads = set_threads()
        torch.set_num_interop_threads(1)
    if variant == "tuned":
        keep_freed_memory()
    else:
        threads = torch.get_num_threads()
    precision = resolve_precision("auto") if tuned else "fp32"
    layout = torch.channels_last if tuned else torch.contiguous_format
    cfg = resolve_recipe(TrainConfig(data="", out="", size=size))
    torch.manual_seed(0)
    model = MCNN(MCNNConfig(height=size[0], width=size[1])).to(memory_format=layout)
    if tuned:
        optimizer = make_optimizer(model, cfg)
        x = as_model_input(torch.randn(batch, 3, *size), precision)
    else:  # the same recipe as a first script would write it
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        x = torch.randn(batch, 3, *size)
    loss_fn = make_loss(cfg)
    batches = itertools.repeat((x, torch.randint(0, 13, (batch,))))
    lr = peak_lr(cfg, batch)

    def step():  # x is already in the variant's layout and precision: train_step's cast is a no-op
        train_step(model, optimizer, loss_fn, batches, lr, precision=precision, memory_format=layout)

    with FlopCounterMode(display=False) as flops:
        step()
    for _ in range(warmup - 1):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # Linux: kB
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    conv_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in CONV_OPS)
    return {
        "variant": variant,
        "precision": precision,
        "channels_last": tuned,
        "threads": threads,
        "s_per_image": seconds / (steps * batch),
        "conv_s_per_image": conv_us / 1e6 / batch,
        "gflop_per_image": flops.get_total_flops() / batch / 1e9,
        "peak_rss_gb": rss,
    }


def gemm_peak(threads: int, n: int = 4096, repeats: int = 5) -> dict:
    """GFLOP/s of an n^3 torch.matmul in bf16 and fp32 on `threads` threads: the rate oneDNN's
    convolutions reach at best on this machine (they are blocked GEMMs)."""
    import torch

    torch.set_num_threads(threads)
    rates = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        rates[name] = 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9
    return rates


def run_child(*args: str) -> dict:
    """One fresh process per measurement, so the peak RSS it reports is its own."""
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    return run_child(
        "--child",
        variant,
        "--size",
        args.size,
        "--batch",
        str(args.batch),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
    )


def main() -> None:
    from training.recipes import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1024x1280")
    parser.add_argument("--batch", type=int, default=TrainConfig.batch_size, help="micro-batch of every step")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per variant (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=(*VARIANTS, "peak"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    cores = len(os.sched_getaffinity(0))
    if args.child == "peak":
        print(json.dumps(gemm_peak(cores)))
        return
    if args.child:
        print(json.dumps(child(args.child, size, args.batch, args.warmup, args.steps)))
        return

    print(cpu_line(cpu_description()), flush=True)  # and torch's own bf16 / fp32 GEMM peaks below
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    peaks = []
    for _ in range(args.rounds):
        peaks.append(run_child("--child", "peak"))
        for variant in VARIANTS:
            runs[variant].append(run_variant(variant, args))
    peak = {k: max(p[k] for p in peaks) for k in ("bf16", "fp32")}  # the best the machine showed
    rows = []
    for variant in VARIANTS:
        first = runs[variant][0]
        s_per_image = statistics.median(r["s_per_image"] for r in runs[variant])
        gflop_s = first["gflop_per_image"] / s_per_image
        rows.append(
            {
                "variant": variant,
                "precision": first["precision"],
                "channels_last": first["channels_last"],
                "threads": first["threads"],
                "s_per_image": round(s_per_image, 4),
                "s_per_image_each_round": [round(r["s_per_image"], 4) for r in runs[variant]],
                "conv_s_per_image": round(statistics.median(r["conv_s_per_image"] for r in runs[variant]), 4),
                "gflop_per_image": round(first["gflop_per_image"], 2),
                "gflop_per_s": round(gflop_s, 1),
                "fraction_of_gemm_peak": round(gflop_s / peak[first["precision"]], 3),
                "peak_rss_gb": round(max(r["peak_rss_gb"] for r in runs[variant]), 3),
            }
        )
    naive, default_malloc, tuned = rows
    speedup = naive["s_per_image"] / tuned["s_per_image"]
    floor = tuned["gflop_per_image"] / peak["bf16"]  # every FLOP at the bf16 GEMM rate, nothing else
    needed = {"tuned_s_per_image_max": 0.40, "speedup_min": 4.0}
    peak_needed = {"for_0.40_s": round(floor / 0.40, 3), "for_4x": round(floor / (naive["s_per_image"] / 4), 3)}
    result = {
        "size": list(size),
        "batch": args.batch,
        "warmup": args.warmup,
        "steps": args.steps,
        "rounds": args.rounds,
        "cores": cores,
        "gemm_peak_gflop_per_s": {k: round(v, 1) for k, v in peak.items()},
        "rows": rows,
        "speedup_tuned_vs_naive": round(speedup, 2),
        "speedup_kept_memory": round(default_malloc["s_per_image"] / tuned["s_per_image"], 2),
        "floor_s_per_image": round(floor, 4),
        "fraction_of_bf16_peak_needed": peak_needed,
        "targets": {**needed, "tuned_s_per_image_met": tuned["s_per_image"] <= 0.40, "speedup_met": speedup >= 4.0},
    }

    print(
        f"training step at {size[0]}x{size[1]}, micro-batch {args.batch}, {args.warmup} warm-up + {args.steps} "
        f"timed steps, {args.rounds} round(s), {cores} cores; GEMM peak on {cores} threads: "
        f"bf16 {peak['bf16']:.0f} GFLOP/s, fp32 {peak['fp32']:.0f} GFLOP/s"
    )
    print(
        f"{'variant':<20} {'precision':<9} {'layout':<14} {'threads':>7} {'s/image':>8} {'conv s/img':>10} "
        f"{'GFLOP/img':>9} {'GFLOP/s':>8} {'of peak':>7} {'peak RSS GB':>11}"
    )
    for r in rows:
        layout = "channels_last" if r["channels_last"] else "NCHW"
        print(
            f"{r['variant']:<20} {r['precision']:<9} {layout:<14} {r['threads']:>7} {r['s_per_image']:>8.3f} "
            f"{r['conv_s_per_image']:>10.3f} {r['gflop_per_image']:>9.1f} {r['gflop_per_s']:>8.1f} "
            f"{r['fraction_of_gemm_peak']:>7.0%} {r['peak_rss_gb']:>11.2f}"
        )
    print(
        f"tuned vs naive: {speedup:.2f}x faster (target >= 4x: {'met' if speedup >= 4 else 'NOT met'}); "
        f"tuned {tuned['s_per_image']:.3f} s/image (target <= 0.40: "
        f"{'met' if tuned['s_per_image'] <= 0.40 else 'NOT met'})"
    )
    print(
        f"malloc keeping freed memory: {default_malloc['s_per_image'] / tuned['s_per_image']:.2f}x faster, "
        f"peak RSS {tuned['peak_rss_gb']:.2f} GB instead of {default_malloc['peak_rss_gb']:.2f} GB"
    )
    print(
        f"floor: {tuned['gflop_per_image']:.0f} GFLOP per image at the bf16 GEMM peak = {floor:.3f} s/image; "
        f"0.40 s/image needs {peak_needed['for_0.40_s']:.0%} of that peak over the whole step, "
        f"4x naive needs {peak_needed['for_4x']:.0%}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

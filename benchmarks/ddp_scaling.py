"""Data-parallel scaling on one node: N ranks x 1 thread against 1 rank x N threads, side by side.

    .venv/bin/python benchmarks/ddp_scaling.py [--size 1024x1280] [--global-batch B] [--warmup 2] [--steps 3] [--json F]

Both layouts train the same global batch per optimizer step on the same cores, with the step
train() runs (training/step.py's train_step: the M-CNN, the default recipe's optimizer and loss,
bf16 autocast where the CPU has it, channels_last, the step's loss summed over the ranks) on
random fields:

The global batch defaults to what `train --nproc-per-node N` trains with by default: train's
micro-batch (4) on each of the N ranks.

    1 x N   one process, N intra-op threads, global batch per step
    N x 1   N ranks under torchrun (DistributedDataParallel over gloo), each set up as train()
            sets up a rank (training/distributed.py: pinned to its own core), 1 thread,
            global batch / N per rank
Each layout's micro-batch and accumulation come from training/plan.py's plan, as `train` plans
them (train's micro-batch, 4, at most per pass, fewer if memory is short; DDP syncs the
gradients on the last micro-batch only).

After `--warmup` untimed steps, `--steps` timed ones (the slowest rank's time); images/s =
global batch x steps / time. Efficiency = images/s of N x 1 / images/s of 1 x N (1.0: the
ranks lose nothing to gradient all-reduce and duplicated work). The layouts alternate
`--rounds` times (median). N = the cores this process may use. Prints a table (and --json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training package of this checkout

from benchmarks.machine import announce  # noqa: E402


def child(size: tuple[int, int], micro: int, accumulation: int, warmup: int, steps: int) -> dict | None:
    """One rank (or the only process): timed training steps; rank 0 returns the result."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from training.distributed import end_ranks, start_ranks
    from training.model import MCNN, MCNNConfig
    from training.process import keep_freed_memory, set_threads
    from training.recipes import TrainConfig, make_loss, make_optimizer, peak_lr, resolve_recipe
    from training.step import as_model_input, resolve_precision, train_step

    ranks = start_ranks(micro, accumulation)  # as train() sets up a rank
    if not ranks.ddp:
        torch.set_num_interop_threads(1)  # as a rank has: the layouts differ in ranks and threads only
    threads = set_threads()
    keep_freed_memory()
    precision = resolve_precision("auto")
    cfg = resolve_recipe(TrainConfig(data="", out="", size=size))
    torch.manual_seed(0)
    raw_model = MCNN(MCNNConfig(height=size[0], width=size[1])).to(memory_format=torch.channels_last)
    model = DistributedDataParallel(raw_model) if ranks.ddp else raw_model
    optimizer, loss_fn = make_optimizer(raw_model, cfg), make_loss(cfg)
    global_batch = micro * accumulation * ranks.world
    generator = torch.Generator().manual_seed(ranks.rank)
    x = as_model_input(torch.randn(micro, 3, *size, generator=generator), precision)
    batches = itertools.repeat((x, torch.randint(0, 13, (micro,), generator=generator)))

    def step():
        train_step(
            model,
            optimizer,
            loss_fn,
            batches,
            peak_lr(cfg, global_batch),
            accumulation=accumulation,
            precision=precision,
            ranks=ranks,
        )

    for _ in range(warmup):
        step()
    if ranks.ddp:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
    if ranks.ddp:
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the step ends when the slowest rank ends
    end_ranks(ranks)
    if not ranks.master:
        return None
    return {
        "ranks": ranks.world,
        "threads_per_rank": threads,
        "micro_batch": micro,
        "accumulation": accumulation,
        "precision": precision,
        "images_per_s": global_batch * steps / seconds.item(),
    }


def plan_layout(ranks: int, args: argparse.Namespace):
    """The plan of `train --nproc-per-node RANKS --global-batch B --size S` on this machine (training/plan.py)."""
    from training.launch import plan_for
    from training.plan import PlanError
    from training.recipes import TrainConfig

    try:
        return plan_for(
            TrainConfig(data="", out="", size=tuple(int(v) for v in args.size.split("x"))),
            ranks,
            global_batch=args.global_batch,
        )
    except PlanError as exc:
        sys.exit(f"{ranks} rank(s): {exc}")


def run_layout(plan, args: argparse.Namespace) -> dict:
    script = [
        __file__,
        "--child",
        "--size",
        args.size,
        "--micro-batch",
        str(plan.micro_batch),
        "--accumulation",
        str(plan.accumulation),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
    ]
    if plan.ranks == 1:
        command = [sys.executable, *script]
    else:
        from training.launch import LaunchOptions, torchrun

        command = [*torchrun(LaunchOptions(nproc_per_node=plan.ranks)), *script]
    env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads_per_rank)}  # as `train` launches torchrun
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1024x1280")
    parser.add_argument("--global-batch", type=int, help="default: train's micro-batch x the cores (N ranks)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per layout (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--micro-batch", type=int, help=argparse.SUPPRESS)  # the child's, from the plan
    parser.add_argument("--accumulation", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        result = child(size, args.micro_batch, args.accumulation, args.warmup, args.steps)
        if result:
            print(json.dumps(result))
        return
    announce()

    cores = len(os.sched_getaffinity(0))
    if args.global_batch is None:
        from training.recipes import TrainConfig

        args.global_batch = TrainConfig.batch_size * cores
    if cores < 2:
        sys.exit("ddp_scaling needs at least 2 cores to compare N ranks x 1 thread with 1 rank x N threads")
    if args.global_batch % cores:
        sys.exit(f"--global-batch {args.global_batch} must be a multiple of the {cores} cores (one rank per core)")
    plans = {"1 rank x threads": plan_layout(1, args), "ranks x 1 thread": plan_layout(cores, args)}
    runs: dict[str, list[dict]] = {name: [] for name in plans}
    for _ in range(args.rounds):
        for name, plan in plans.items():
            runs[name].append(run_layout(plan, args))
    rows = []
    for results in runs.values():
        first = results[0]
        rows.append(
            {
                "layout": f"{first['ranks']} x {first['threads_per_rank']}",
                "ranks": first["ranks"],
                "threads_per_rank": first["threads_per_rank"],
                "micro_batch": first["micro_batch"],
                "accumulation": first["accumulation"],
                "precision": first["precision"],
                "images_per_s": round(statistics.median(r["images_per_s"] for r in results), 4),
                "images_per_s_each_round": [round(r["images_per_s"], 4) for r in results],
            }
        )
    single, distributed = rows
    efficiency = distributed["images_per_s"] / single["images_per_s"]
    result = {
        "size": list(size),
        "global_batch": args.global_batch,
        "warmup": args.warmup,
        "steps": args.steps,
        "rounds": args.rounds,
        "cores": cores,
        "rows": rows,
        "efficiency": round(efficiency, 3),
        "target": {"efficiency_min": 0.90, "met": efficiency >= 0.90},
    }

    print(
        f"training step at {size[0]}x{size[1]}, global batch {args.global_batch}, {args.warmup} warm-up + "
        f"{args.steps} timed steps, {args.rounds} round(s), {cores} cores"
    )
    print(f"{'ranks x threads':<16} {'micro-batch':>11} {'accumulated':>11} {'precision':>9} {'images/s':>9}")
    for r in rows:
        print(
            f"{r['layout']:<16} {r['micro_batch']:>11} {r['accumulation']:>11} {r['precision']:>9} "
            f"{r['images_per_s']:>9.3f}"
        )
    verdict = "met" if result["target"]["met"] else "NOT met"
    print(f"efficiency ({distributed['layout']}) / ({single['layout']}): {efficiency:.2f} (target >= 0.90: {verdict})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

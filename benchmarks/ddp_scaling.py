"""Data-parallel scaling on one node: N ranks x 1 thread against 1 rank x N threads, side by side.

    .venv/bin/python benchmarks/ddp_scaling.py [--size 1024x1280] [--global-batch B] [--warmup 2] [--steps 3] [--json F]

Both layouts train the same global batch per optimizer step on the same cores, with the step
train() runs (the M-CNN, the default recipe's optimizer, bf16 autocast where the CPU has it,
channels_last) on random fields:

The global batch defaults to what `train --nproc-per-node N` trains with by default: train's
micro-batch (4) on each of the N ranks.

    1 x N   one process, N intra-op threads, global batch per step
    N x 1   N ranks under torchrun (DistributedDataParallel over gloo), each pinned to its own
            core as train() pins them, 1 thread, global batch / N per rank
Each process runs train's micro-batch (4) at most per pass and accumulates the rest, as
train() plans it (DDP syncs the gradients on the last micro-batch only).

After `--warmup` untimed steps, `--steps` timed ones (the slowest rank's time); images/s =
global batch x steps / time. Efficiency = images/s of N x 1 / images/s of 1 x N (1.0: the
ranks lose nothing to gradient all-reduce and duplicated work). The layouts alternate
`--rounds` times (median). N = the cores this process may use. Prints a table (and --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training package of this checkout


def child(size: tuple[int, int], global_batch: int, warmup: int, steps: int) -> dict | None:
    """One rank (or the only process): timed training steps; rank 0 returns the result."""
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from training.model import MCNN, MCNNConfig
    from training.process import keep_freed_memory, rank_cores, set_threads
    from training.train import TrainConfig, as_model_input, make_optimizer, resolve_precision, resolve_recipe

    ddp = int(os.environ.get("WORLD_SIZE", 1)) > 1
    rank, world = 0, 1
    if ddp:  # as train() sets up a rank
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        os.sched_setaffinity(0, rank_cores(os.sched_getaffinity(0), int(os.environ["LOCAL_RANK"]),
                                           int(os.environ["LOCAL_WORLD_SIZE"])))
    torch.set_num_interop_threads(1)
    threads = set_threads()
    keep_freed_memory()
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} does not split over {world} ranks")
    # As train() plans it: at most train's micro-batch per pass, accumulation for the rest.
    per_rank = global_batch // world
    micro = max(d for d in range(1, min(per_rank, TrainConfig.batch_size) + 1) if per_rank % d == 0)
    accumulation = per_rank // micro
    precision = resolve_precision("auto")
    cfg = resolve_recipe(TrainConfig(data="", out="", size=size))
    torch.manual_seed(0)
    raw_model = MCNN(MCNNConfig(height=size[0], width=size[1])).to(memory_format=torch.channels_last)
    model = DistributedDataParallel(raw_model) if ddp else raw_model
    optimizer = make_optimizer(raw_model, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    generator = torch.Generator().manual_seed(rank)
    x = as_model_input(torch.randn(micro, 3, *size, generator=generator), precision)
    y = torch.randint(0, 13, (micro,), generator=generator)

    def step():
        for i in range(accumulation):  # DDP averages the gradients once, on the last micro-batch
            with model.no_sync() if ddp and i < accumulation - 1 else nullcontext():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = model(x)
                (loss_fn(logits.float(), y) / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if ddp:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
    if ddp:
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the step ends when the slowest rank ends
        dist.destroy_process_group()
    if rank:
        return None
    return {"ranks": world, "threads_per_rank": threads, "micro_batch": micro, "accumulation": accumulation,
            "precision": precision,
            "images_per_s": global_batch * steps / seconds.item()}


def run_layout(ranks: int, args: argparse.Namespace) -> dict:
    script = [__file__, "--child", "--size", args.size, "--global-batch", str(args.global_batch),
              "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if ranks == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                   *script]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // ranks))}
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
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        result = child(size, args.global_batch, args.warmup, args.steps)
        if result:
            print(json.dumps(result))
        return

    cores = len(os.sched_getaffinity(0))
    if args.global_batch is None:
        from training.train import TrainConfig

        args.global_batch = TrainConfig.batch_size * cores
    if cores < 2:
        sys.exit("ddp_scaling needs at least 2 cores to compare N ranks x 1 thread with 1 rank x N threads")
    if args.global_batch % cores:
        sys.exit(f"--global-batch {args.global_batch} must be a multiple of the {cores} cores (one rank per core)")
    layouts = {"1 rank x threads": 1, "ranks x 1 thread": cores}
    runs: dict[str, list[dict]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, ranks in layouts.items():
            runs[name].append(run_layout(ranks, args))
    rows = []
    for name, results in runs.items():
        first = results[0]
        rows.append({"layout": f"{first['ranks']} x {first['threads_per_rank']}", "ranks": first["ranks"],
                     "threads_per_rank": first["threads_per_rank"], "micro_batch": first["micro_batch"],
                     "accumulation": first["accumulation"], "precision": first["precision"],
                     "images_per_s": round(statistics.median(r["images_per_s"] for r in results), 4),
                     "images_per_s_each_round": [round(r["images_per_s"], 4) for r in results]})
    single, distributed = rows
    efficiency = distributed["images_per_s"] / single["images_per_s"]
    result = {"size": list(size), "global_batch": args.global_batch, "warmup": args.warmup, "steps": args.steps,
              "rounds": args.rounds, "cores": cores, "rows": rows, "efficiency": round(efficiency, 3),
              "target": {"efficiency_min": 0.90, "met": efficiency >= 0.90}}

    print(f"training step at {size[0]}x{size[1]}, global batch {args.global_batch}, {args.warmup} warm-up + "
          f"{args.steps} timed steps, {args.rounds} round(s), {cores} cores")
    print(f"{'ranks x threads':<16} {'micro-batch':>11} {'accumulated':>11} {'precision':>9} {'images/s':>9}")
    for r in rows:
        print(f"{r['layout']:<16} {r['micro_batch']:>11} {r['accumulation']:>11} {r['precision']:>9} "
              f"{r['images_per_s']:>9.3f}")
    print(f"efficiency ({distributed['layout']}) / ({single['layout']}): {efficiency:.2f} "
          f"(target >= 0.90: {'met' if efficiency >= 0.90 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

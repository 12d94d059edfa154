"""Planning a training run: ranks, threads, micro-batch and accumulation that fit the machine.

`plan` is a pure function (as nnU-Net plans): the same numbers in, the same plan out; nothing is
probed inside it. The `train` command measures the machine (`available_memory_gb`, `usable_cores`),
prints the plan and saves it with the run as plan.json.

Memory of one rank = fixed part (Python, torch, weights, gradients, optimizer state)
                   + micro-batch x memory per field (activations kept for backward).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

GB = 1024**3
FULL_SIZE = (1024, 1280)
FULL_RESOLUTION_PARAMETERS = 42_577_261  # the M-CNN at 1024x1280, 13 classes

# Peak resident memory per training field at 1024x1280, by precision (AdamW steps, channels_last,
# malloc keeping freed memory as train() sets it: training/process.py). Measured at full
# resolution with `benchmarks/train_memory.py --size 1024x1280 --batches 1 4 --steps 3`:
# 1.64 -> 2.75 GB bf16 (0.372 GB per field), 1.78 -> 4.06 GB fp32 (0.759 GB per field).
# Other sizes are scaled by pixels.
FIELD_GB = {"bf16": 0.37, "fp32": 0.76}
# Fixed part of one rank: 22 bytes per parameter (weights, gradients, AdamW's two moments,
# autocast's bf16 copies) plus 0.57 GB of Python, torch and heap the kept memory does not fit
# back into: the smallest figure that covers every full-resolution peak measured with the
# same command at 1, 2, 4 and 6 fields (2 and 6: `--batches 2 6`; the heap grows less than
# linearly, so a line through 1 and 4 fields under-estimates 2). DDP keeps one more gradient
# copy in its buckets: 4 bytes per parameter, from DDP's design, not measured.
RUNTIME_GB = 0.57
BYTES_PER_PARAMETER = 22
DDP_BYTES_PER_PARAMETER = 4


class PlanError(ValueError):
    """No plan fits; the message names the largest one that does."""


@dataclass(frozen=True)
class Plan:
    nodes: int
    ranks: int  # per node
    threads_per_rank: int
    micro_batch: int  # fields per forward pass on each rank
    accumulation: int  # micro-batches per optimizer step
    global_batch: int  # micro_batch x accumulation x ranks x nodes
    memory_gb: float  # the budget of one node
    rank_gb: float  # fixed memory of one rank
    field_gb: float  # memory per field in a micro-batch
    peak_gb: float  # estimated peak of one node

    def describe(self) -> str:
        return (
            f"plan: {self.nodes} node(s) x {self.ranks} rank(s) x {self.threads_per_rank} thread(s); "
            f"micro-batch {self.micro_batch} x {self.accumulation} accumulated x {self.nodes * self.ranks} "
            f"rank(s) = global batch {self.global_batch}; estimated peak {self.peak_gb:.1f} of "
            f"{self.memory_gb:.1f} GB per node ({self.rank_gb:.2f} GB per rank + {self.field_gb:.3f} GB per field)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def field_gb(size: tuple[int, int], precision: str) -> float:
    """Memory per training field at `size`, scaled by pixels from the full-resolution figure."""
    return FIELD_GB[precision] * size[0] * size[1] / (FULL_SIZE[0] * FULL_SIZE[1])


def rank_gb(parameters: int, distributed: bool) -> float:
    return RUNTIME_GB + parameters * (BYTES_PER_PARAMETER + DDP_BYTES_PER_PARAMETER * distributed) / GB


def largest_micro_batch(budget_gb: float, fixed_gb: float, per_image_gb: float) -> int:
    return max(0, int((budget_gb - fixed_gb) // per_image_gb))


def plan(
    cores: int,
    memory_gb: float,
    global_batch: int,
    per_image_gb: float,
    ranks: int | None = None,
    *,
    nodes: int = 1,
    numa_nodes: int = 1,
    max_micro_batch: int | None = None,
    parameters: int = FULL_RESOLUTION_PARAMETERS,
) -> Plan:
    """The plan for `global_batch` fields per optimizer step on `nodes` nodes of `cores` and `memory_gb`.

    ranks: processes per node; None: one per NUMA node (memory stays local), fewer if that does
    not fit. The micro-batch is the largest divisor of the per-rank batch (at most
    max_micro_batch) that fits in memory; accumulation makes up the rest.
    """
    if min(global_batch, cores, nodes, ranks or 1, max_micro_batch or 1) < 1:
        raise PlanError("global batch, cores, nodes, ranks and micro-batch must be at least 1")
    candidates = [ranks] if ranks else range(max(1, min(numa_nodes, cores)), 0, -1)
    for r in candidates:
        world = r * nodes
        if global_batch % world:
            if ranks or r == 1:
                raise PlanError(
                    f"global batch {global_batch} does not split evenly over {world} ranks; use a multiple of {world}"
                )
            continue
        per_rank, fixed = global_batch // world, rank_gb(parameters, world > 1)
        fits = largest_micro_batch(memory_gb / r, fixed, per_image_gb)
        limit = min(fits, max_micro_batch or per_rank, per_rank)
        micro = max((d for d in range(1, limit + 1) if per_rank % d == 0), default=0)
        if micro:
            return Plan(
                nodes=nodes,
                ranks=r,
                threads_per_rank=max(1, cores // r),
                micro_batch=micro,
                accumulation=per_rank // micro,
                global_batch=global_batch,
                memory_gb=round(memory_gb, 2),
                rank_gb=round(fixed, 3),
                field_gb=round(per_image_gb, 4),
                peak_gb=round(r * (fixed + micro * per_image_gb), 2),
            )
    # Not even one field per rank fits: name the largest plan that does (fewer ranks per node).
    r = ranks or 1
    fixed = rank_gb(parameters, r * nodes > 1)
    smaller = [
        (q, largest_micro_batch(memory_gb / q, rank_gb(parameters, q * nodes > 1), per_image_gb))
        for q in range(r - 1, 0, -1)
        if global_batch % (q * nodes) == 0
    ]
    smaller = [(q, m) for q, m in smaller if m >= 1]
    largest = (
        f"the largest plan that fits: {smaller[0][0]} rank(s) per node, micro-batch up to {smaller[0][1]} "
        f"(--nproc-per-node {smaller[0][0]})"
        if smaller
        else "no plan fits on this node: use a smaller field size or more memory"
    )
    raise PlanError(
        f"{r} rank(s) x ({fixed:.2f} GB + 1 field x {per_image_gb:.3g} GB) = "
        f"{r * (fixed + per_image_gb):.1f} GB > {memory_gb:.1f} GB of memory; {largest}"
    )


def model_parameters(size: tuple[int, int]) -> int:
    """Parameters of the M-CNN at `size` (13 classes), counted on torch's meta device: no memory."""
    import torch

    from training.model import MCNN, MCNNConfig, count_parameters

    with torch.device("meta"):
        return count_parameters(MCNN(MCNNConfig(height=size[0], width=size[1])))


# The machine, measured by the `train` command and handed to `plan`.


def available_memory_gb(margin: float = 0.1, at_least_gb: float = 1.0) -> float:
    """MemAvailable (or the cgroup's remaining limit, if lower) minus a margin of 10 %, at least 1 GB."""
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    limit, current = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.is_file() and current.is_file() and limit.read_text().strip() != "max":
        available = min(available, int(limit.read_text()) - int(current.read_text()))
    return max(0.0, available / GB - max(at_least_gb, margin * available / GB))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))

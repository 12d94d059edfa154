"""How one training process uses the machine: its cores, its threads and its memory allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

from appliance.threads import compute_threads

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def rank_cores(cores: list[int], local_rank: int, local_ranks: int) -> list[int]:
    """This rank's share of the node's cores: contiguous blocks, one per local rank.

    With fewer cores than ranks, ranks share cores round-robin (oversubscribed, but runs).
    """
    cores, n = sorted(cores), len(cores)
    if local_ranks > n:
        return [cores[local_rank % n]]
    return cores[local_rank * n // local_ranks : (local_rank + 1) * n // local_ranks]


def set_threads(threads: int | None = None) -> int:
    """Use the cores this process may run on (affinity, cgroup quota, MCNN_THREADS), not the host's count."""
    threads = threads or compute_threads()
    torch.set_num_threads(threads)
    return threads


def keep_freed_memory() -> str:
    """Make malloc keep the memory a training step frees, for the next step; returns the allocator in use.

    A step allocates and frees gigabytes of activations. glibc serves every block over 32 MB
    with a fresh mmap and unmaps it on free, so the kernel faults in and zeroes every page again
    at the next step (benchmarks/train_throughput.py shows the cost: variant tuned_default_malloc
    against tuned). With mmap and trimming off, glibc reuses its heap; the price is that the heap
    keeps its high-water mark (training/plan.py's memory figures are measured with it). tcmalloc or jemalloc, where
    preloaded (LD_PRELOAD), cache freed memory themselves and are left alone, as is a libc
    without mallopt (musl).
    """
    preloaded = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc"):
        if name in preloaded:
            return name
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system malloc (untuned)"
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return "glibc malloc (untuned: mallopt refused)"
    return "glibc malloc, freed memory kept"

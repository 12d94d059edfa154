"""One process, or one rank of several under torchrun (DistributedDataParallel over gloo).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. A rank joins the others, takes
its own block of the node's cores (its intra-op threads; one inter-op thread) and checks that
every rank planned the same batches. Rank 0 (`master`) alone writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.process import rank_cores


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def master(self) -> bool:
        return self.rank == 0


ONE_PROCESS = Ranks()


def start_ranks(batch_size: int, accumulation: int) -> Ranks:
    """Ranks() for one process; under torchrun, join the ranks, pin this one to its cores, check the batches."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return ONE_PROCESS
    join_ranks()
    ranks = Ranks(dist.get_rank(), dist.get_world_size())
    os.sched_setaffinity(
        0, rank_cores(os.sched_getaffinity(0), int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"]))
    )
    torch.set_num_interop_threads(1)
    check_same_batches(batch_size, accumulation)
    return ranks


def join_ranks() -> None:
    """init_process_group over gloo, in a store namespace of its own on each torchrun attempt.

    torchrun's agent keeps one store across restarts (seen with torch 2.13), so the restarted ranks
    could read the dead ones' addresses and fail ("Connection refused"; cf. pytorch/pytorch#167288).
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt == "0" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group("gloo")
        return
    agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore(f"mcnn-attempt-{attempt}", agent_store),
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
    )


def check_same_batches(batch_size: int, accumulation: int) -> None:
    """Every rank must step alike, or DDP waits forever: check they planned the same batches."""
    batching = torch.tensor([batch_size, accumulation, -batch_size, -accumulation])
    dist.all_reduce(batching, op=dist.ReduceOp.MAX)
    if batching[0] != -batching[2] or batching[1] != -batching[3]:
        raise ValueError(
            "ranks planned different micro-batches or accumulations; give every node the same "
            "--memory-gb (and the same options)"
        )


def restarted() -> bool:
    """torchrun restarted the workers after a failure: they continue from the last checkpoint."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0


def sum_over_ranks(values: list[float], ranks: Ranks) -> list[float]:
    totals = torch.tensor(values, dtype=torch.float64)
    if ranks.ddp:
        dist.all_reduce(totals)
    return totals.tolist()


def from_master(value: int, ranks: Ranks) -> int:
    """Rank 0's value on every rank."""
    if not ranks.ddp:
        return value
    tensor = torch.tensor([value])
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def end_ranks(ranks: Ranks) -> None:
    if ranks.ddp:
        dist.destroy_process_group()

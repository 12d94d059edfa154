"""One optimizer step, and one pass of evaluation: what train() and the training benchmarks run.

train_step   `accumulation` micro-batches: forward (bf16 autocast where asked), loss, backward
             (DDP syncs on the last only), the step's loss over all ranks (checked), the
             rate per layer, clipping, optimizer.step
evaluate     summed loss, correct and fields over a loader
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training.distributed import ONE_PROCESS, Ranks, sum_over_ranks


def bf16_supported() -> bool:
    """Native bf16 (AVX512-BF16 or AMX) in oneDNN; elsewhere bf16 is emulated and slower."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: str) -> str:
    if requested == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if requested not in ("bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {requested!r}")
    return requested


def as_model_input(
    x: torch.Tensor, precision: str, memory_format: torch.memory_format = torch.channels_last
) -> torch.Tensor:
    """Channels-last, and bf16 when training in bf16: autocast would cast every column's pooled
    copy of the field; casting once is the same values (rounding keeps max-pooling's order).
    A tensor already in that form is returned as it is."""
    dtype = torch.bfloat16 if precision == "bf16" else x.dtype
    return x.to(dtype=dtype, memory_format=memory_format)


@dataclass
class StepStats:
    loss: float  # the step's mean loss over every rank's fields
    loss_sum: float  # this rank's: summed loss, correct predictions, fields, seconds waiting for the loader
    correct: int
    seen: int
    data_wait: float


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    lr: float,
    *,
    accumulation: int = 1,
    precision: str = "fp32",
    clip_grad: float = 0.0,
    ranks: Ranks = ONE_PROCESS,
    on_non_finite: Callable[[float], None] | None = None,
    memory_format: torch.memory_format = torch.channels_last,
) -> StepStats:
    """One optimizer step over the next `accumulation` micro-batches of `batches`.

    Gradients add up over the micro-batches; a DistributedDataParallel model averages them over
    the ranks once, on the last one (no_sync before it). The step's loss is summed over all ranks
    before the weights change: a non-finite one stops every rank at the same step, with
    `on_non_finite(loss)` (which raises) or FloatingPointError. Each parameter group learns at
    lr x its "lr_scale" (make_optimizer's; 1 without).
    """
    loss_sum, correct, seen, data_wait = 0.0, 0, 0, 0.0
    for i in range(accumulation):
        fetch = time.time()
        x, y = next(batches)
        data_wait += time.time() - fetch
        last = i == accumulation - 1
        x = as_model_input(x, precision, memory_format)
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else nullcontext()
        with sync:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            (loss / accumulation).backward()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    step_loss_sum, step_seen = sum_over_ranks([loss_sum, seen], ranks)
    step_loss = step_loss_sum / step_seen
    if not math.isfinite(step_loss):
        if on_non_finite:
            on_non_finite(step_loss)
        raise FloatingPointError(f"the loss is {step_loss}")
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    if clip_grad:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(step_loss, loss_sum, correct, seen, data_wait)


def evaluate(model: nn.Module, loader, precision: str) -> tuple[float, int, int]:
    """Summed cross-entropy, number correct and number of fields over a loader."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for x, y in loader:
            logits = model(as_model_input(x, precision)).float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return loss_sum, correct, n

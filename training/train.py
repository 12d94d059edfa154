"""Training the M-CNN on BBBC021-layout data, top to bottom.

    fields -> stratified split -> normalisation fitted on training fields -> model
    -> epochs of (train, validate, metrics row, save) -> a run folder export can read.

Checkpoints (training/checkpoint.py) every --checkpoint-every optimizer steps and at every epoch's
end let `--resume` (or torchrun restarting the workers after a failure) continue exactly where
the run stopped. A non-finite loss or weight stops the run, keeping the last good checkpoint.

One process, or one per rank under torchrun (DistributedDataParallel over gloo):

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m training.train '{"config": {...}}'

`mcnn-appliance train --nproc-per-node 2` builds that command line itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import signal
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

import appliance
from appliance.files import write_atomically
from appliance.fieldsets import SPLIT_CSV
from appliance.imageio import read_field
from appliance.layouts.base import CHANNELS
from appliance.layouts.bbbc021 import class_names, load_fields
from appliance.normalization import fit_normalization
from training.curves import draw_curves
from training.checkpoint import (CHECKPOINTS, ResumeError, checkpoint_path, checkpoint_step, config_differences,
                                 list_checkpoints, load_checkpoint, read_checkpoint_state, save_checkpoint)
from training.data import EpochSampler, FieldDataset, select_split, spread_sample, write_split
from training.model import MCNN, MCNNConfig, count_parameters
from training.process import keep_freed_memory, rank_cores, set_threads
from training.run import WEIGHTS, save_run

METRICS_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                   "images_per_s", "data_wait", "epoch_s", "wall_s")  # data_wait: fraction of the epoch
STEPS_COLUMNS = ("step", "epoch", "loss", "lr")  # steps.csv: every optimizer step's loss (mean over its fields)
STOPPED = "stopped.json"  # written when a non-finite loss stops the run: resuming would only repeat it
# Options a resumed run may change; every other one must be the run's (new options are safe by default).
# Micro-batch and accumulation may change as long as the global batch and the ranks stay.
RESUME_MAY_DIFFER = {"data", "out", "resume", "workers", "threads", "target_acc", "batch_size", "accumulation",
                     "checkpoint_every", "keep_checkpoints"}


@dataclass(frozen=True)
class Recipe:
    """Optimizer and learning-rate schedule that belong together; a TrainConfig field that is set overrides."""

    optimizer: str  # "adamw" or "sgd" (Nesterov momentum 0.9)
    lr: float  # peak rate at lr_reference_batch fields per optimizer step
    lr_scaling: str  # "linear": peak rate = lr x global batch / lr_reference_batch (Goyal et al. 2017); "none"
    lr_reference_batch: int
    weight_decay: float
    warmup_epochs: float  # linear warmup, then cosine decay to zero


RECIPES = {
    # Tuned for the demo at full resolution (batch 2): 1e-3 learns slower; 0.08 epochs = the
    # demo's 4 warmup steps of 52.
    "adamw": Recipe(optimizer="adamw", lr=3e-4, lr_scaling="none", lr_reference_batch=2, weight_decay=0.05,
                    warmup_epochs=0.08),
    # Datta et al. 2019: Nesterov SGD, weight decay 5e-5, 0.01 per 256 fields scaled linearly.
    "paper": Recipe(optimizer="sgd", lr=0.01, lr_scaling="linear", lr_reference_batch=256, weight_decay=5e-5,
                    warmup_epochs=2.0),
}
DEFAULT_RECIPE = "adamw"


@dataclass
class TrainConfig:
    data: str
    out: str
    epochs: int = 4
    batch_size: int = 4  # micro-batch: fields per forward pass on each rank
    accumulation: int = 1  # micro-batches per optimizer step; global batch = batch_size x accumulation x ranks
    size: tuple[int, int] = (1024, 1280)
    seed: int = 0
    recipe: str = DEFAULT_RECIPE  # a name in RECIPES; the five fields below, when set, override it
    optimizer: str | None = None
    lr: float | None = None
    lr_scaling: str | None = None
    lr_reference_batch: int | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    label_smoothing: float = 0.1
    gain_jitter: float = 0.15  # augmentation: each stain's gain x exp(U(-j, j)), as imaging weeks differ
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    split: str = "stratified"  # or "nsc" / "nscb": hold out compound `fold` (training/data.py)
    fold: int | None = None
    val_fraction: float = 0.2  # the stratified split's hold-out
    target_acc: float = 0.99  # time to accuracy: the run records when validation first reaches it
    precision: str = "auto"  # "auto" (bf16 where the CPU has it), "bf16" or "fp32"
    workers: int = 1  # data-loading processes: TIFF decoding overlaps compute
    threads: int | None = None  # compute threads; default: the CPUs this process may use
    norm_fields: int = 16  # training fields sampled to fit the normalisation
    checkpoint_every: int = 100  # optimizer steps between checkpoints (RUN/checkpoints/); 0 = at epoch ends only
    keep_checkpoints: int = 2  # the newest K checkpoints are kept
    resume: bool = False  # continue the run in `out` from its latest checkpoint


def resolve_recipe(cfg: TrainConfig) -> TrainConfig:
    """A copy of `cfg` with every recipe field filled: the ones set in cfg win, the recipe gives the rest."""
    if cfg.recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {cfg.recipe!r}")
    recipe = asdict(RECIPES[cfg.recipe])
    return replace(cfg, **{k: v for k, v in recipe.items() if getattr(cfg, k) is None})


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Warmup in optimizer steps: at least one step if there is any warmup at all."""
    return max(1, round(warmup_epochs * steps_per_epoch)) if warmup_epochs > 0 else 0


def bf16_supported() -> bool:
    """Native bf16 (AVX512-BF16 or AMX) in oneDNN; elsewhere bf16 is emulated and slower."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: str) -> str:
    if requested == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if requested not in ("bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {requested!r}")
    return requested


def get_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup to `base` over `warmup` steps, then cosine decay to zero at `total` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_scale(module: nn.Module, reference_fan_in: int = 1024) -> float:
    """Layers wider than `reference_fan_in` inputs learn at 1/sqrt(fan-in) of the rate.

    The M-CNN has no normalisation layers and its 81,920-input linear layer sees only
    non-negative inputs, so one step of the same size per weight moves that layer's outputs
    far more than any other's; scaling its rate (~0.11x at full resolution) lets the whole
    network learn at the rate the convolutions tolerate.
    """
    fan_in = module.weight[0].numel()
    return min(1.0, (reference_fan_in / fan_in) ** 0.5)


def peak_lr(cfg: TrainConfig, global_batch: int) -> float:
    cfg = resolve_recipe(cfg)
    if cfg.lr_scaling == "none":
        return cfg.lr
    if cfg.lr_scaling == "linear":
        return cfg.lr * global_batch / cfg.lr_reference_batch
    raise ValueError(f"lr_scaling must be none or linear, not {cfg.lr_scaling!r}")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay on weights only, not on biases (nanoGPT's rule); a rate scale per layer.
    cfg = resolve_recipe(cfg)
    groups = []
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            scale = lr_scale(layer)
            groups += [{"params": [layer.weight], "weight_decay": cfg.weight_decay, "lr_scale": scale},
                       {"params": [layer.bias], "weight_decay": 0.0, "lr_scale": scale}]
    # fused=True: one kernel per step instead of a dozen passes over the 42M weights of the
    # first linear layer.
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, fused=True)
    raise ValueError(f"optimizer must be adamw or sgd, not {cfg.optimizer!r}")


def as_model_input(x: torch.Tensor, precision: str) -> torch.Tensor:
    """Channels-last, and bf16 when training in bf16: autocast would cast every column's pooled
    copy of the field; casting once is the same values (rounding keeps max-pooling's order)."""
    dtype = torch.bfloat16 if precision == "bf16" else x.dtype
    return x.to(dtype=dtype, memory_format=torch.channels_last)


def evaluate(model: nn.Module, loader: DataLoader, precision: str) -> tuple[float, int, int]:
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


def train(cfg: TrainConfig, console: Console | None = None, plan: dict | None = None) -> dict:
    """Train as one process, or as one rank under torchrun; `plan` (training/plan.py) is saved as plan.json."""
    console = console or Console()
    start = time.time()
    cfg = resolve_recipe(cfg)
    # Distributed: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; each rank gets
    # its own block of the node's cores (intra-op threads = its cores, one inter-op thread).
    ddp = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if ddp:
        join_ranks()
        rank, world = dist.get_rank(), dist.get_world_size()
        os.sched_setaffinity(0, rank_cores(os.sched_getaffinity(0), int(os.environ["LOCAL_RANK"]),
                                           int(os.environ["LOCAL_WORLD_SIZE"])))
        torch.set_num_interop_threads(1)
        # Every rank must step alike, or DDP waits forever: check they planned the same batches.
        batching = torch.tensor([cfg.batch_size, cfg.accumulation, -cfg.batch_size, -cfg.accumulation])
        dist.all_reduce(batching, op=dist.ReduceOp.MAX)
        if batching[0] != -batching[2] or batching[1] != -batching[3]:
            raise ValueError("ranks planned different micro-batches or accumulations; give every node the same "
                             "--memory-gb (and the same options)")
    else:
        rank, world = 0, 1
    master = rank == 0  # only rank 0 writes files and shows progress
    if not master:
        console = Console(quiet=True)
    threads = set_threads(cfg.threads)
    allocator = keep_freed_memory()
    precision = resolve_precision(cfg.precision)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    # torchrun restarts every worker when one fails: the new workers continue from the last checkpoint.
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0
    checkpoint = find_checkpoint(out, cfg, restarted, ddp)
    resumed = read_checkpoint_state(checkpoint) if checkpoint else None
    if resumed:
        check_resumable(resumed, cfg, world)
    if master:
        out.mkdir(parents=True, exist_ok=True)
        if not resumed:  # a new run in this folder: an older run's checkpoints must never be resumed
            for old in list_checkpoints(out):
                old.unlink()
            (out / STOPPED).unlink(missing_ok=True)
        if plan:
            (out / "plan.json").write_text(json.dumps(plan, indent=2))

    # Data: labelled fields, a held-out set (stratified, NSC or NSCB), and the normalisation from training fields.
    fields = load_fields(Path(cfg.data))
    if not fields:
        raise ValueError(f"{cfg.data}: no labelled fields (image table joined with MoA table is empty)")
    labels = class_names(fields)
    train_fields, val_fields = select_split(fields, cfg.split, cfg.fold, cfg.val_fraction, cfg.seed)
    if master:
        write_split(out / SPLIT_CSV, train_fields, val_fields)
    size = tuple(cfg.size)
    normalization = fit_normalization(read_field(f.paths, size) for f in spread_sample(train_fields, cfg.norm_fields))

    train_set = FieldDataset(train_fields, labels, size, normalization, augment=True,
                             gain_jitter=cfg.gain_jitter, seed=cfg.seed)
    val_set = FieldDataset(val_fields, labels, size, normalization)
    # Each rank trains on its share of every epoch's shuffle and validates on every world-th field.
    sampler = EpochSampler(train_set, world, rank, seed=cfg.seed)
    per_rank = len(sampler)
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    # The generator only seeds the loader's workers, which draw nothing: a checkpoint need not hold it.
    train_loader = DataLoader(train_set, sampler=sampler, drop_last=per_rank > cfg.batch_size,
                              generator=torch.Generator().manual_seed(cfg.seed), **loader_args)
    val_loader = DataLoader(Subset(val_set, range(rank, len(val_set), world)), **loader_args) if val_fields else []

    # Model and recipe.
    config = MCNNConfig(height=size[0], width=size[1], in_channels=len(CHANNELS), num_classes=len(labels))
    raw_model = MCNN(config).to(memory_format=torch.channels_last)
    model = DistributedDataParallel(raw_model) if ddp else raw_model  # DDP: same start weights on every rank
    optimizer = make_optimizer(raw_model, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    global_batch = cfg.batch_size * cfg.accumulation * world
    base_lr = peak_lr(cfg, global_batch)
    steps_per_epoch = len(train_loader) // cfg.accumulation  # a partial accumulation at the end is dropped
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_loader)} micro-batch(es) per rank per epoch cannot make one step of "
                         f"{cfg.accumulation}: lower the accumulation or the batch size")
    total_steps = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg.warmup_epochs, steps_per_epoch)
    if resumed:
        if resumed["info"]["normalization"] != normalization.to_dict():
            raise ResumeError(f"{checkpoint}: the normalisation fitted on the training fields now differs from the "
                              f"run's; were the files in {cfg.data} changed?")
        load_checkpoint(checkpoint, raw_model, optimizer)  # weights, optimizer state, RNG states
    info = {
        "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "labels": labels, "channels": list(CHANNELS), "normalization": normalization.to_dict(),
        "train_config": {**asdict(cfg), "size": list(size)}, "precision": precision, "threads": threads,
        "allocator": allocator, "ranks": world, "global_batch": global_batch, "peak_lr": base_lr,
        "fields": {"train": len(train_fields), "val": len(val_fields)},
        "versions": {"mcnn_appliance": appliance.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    if resumed:  # the same run continues: its id, its time to accuracy; the resumes are recorded
        info = {**resumed["info"], "train_config": info["train_config"], "threads": threads, "allocator": allocator,
                "resumes": resumed["info"].get("resumes", []) + [
                    {"step": resumed["step"], "at": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
                     "elastic_restart": restarted}]}
        start = time.time() - resumed["wall_s"]  # wall_s counts training time, not the time the run was stopped
    layout = f"{threads} threads, batch {cfg.batch_size}"
    if ddp or cfg.accumulation > 1:
        layout = (f"{world} rank(s) x {threads} threads, micro-batch {cfg.batch_size} x {cfg.accumulation} "
                  f"accumulated x {world} = global batch {global_batch}")
    console.print(f"[bold]M-CNN[/] {size[0]}x{size[1]}, {count_parameters(raw_model) / 1e6:.1f} M parameters, "
                  f"{len(labels)} classes; {len(train_fields)} training / {len(val_fields)} validation fields; "
                  f"{precision}, {layout}, {allocator}; recipe {cfg.recipe}: {cfg.optimizer} lr {base_lr:g}, "
                  f"weight decay {cfg.weight_decay:g}, warmup {warmup} steps")
    if resumed:
        console.print(f"resuming run {info['run_id']} at step {resumed['step']} (epoch {resumed['epoch']}) "
                      f"from {checkpoint}")

    metrics_path, steps_path = out / "metrics.csv", out / "steps.csv"
    step, history = (resumed["step"], resumed["history"]) if resumed else (0, [])
    if master:  # a resumed run's files are cut back to its checkpoint: every epoch and step appears once
        rewrite_csv(metrics_path, METRICS_COLUMNS, history)
        rewrite_csv(steps_path, STEPS_COLUMNS, [r for r in read_csv(steps_path) if int(r["step"]) <= step]
                    if resumed else [])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        for epoch in range(resumed["epoch"] if resumed else 1, cfg.epochs + 1):
            # A resumed epoch skips the micro-batches already trained and carries their sums (kept by rank 0).
            continuing = resumed is not None and epoch == resumed["epoch"]
            done = resumed["epoch_steps"] if continuing else 0
            carried = resumed["epoch_sums"] if continuing and master else [0.0] * 5
            elapsed_before = resumed["epoch_elapsed"] if continuing else 0.0
            task = bar.add_task(f"epoch {epoch}/{cfg.epochs}", total=steps_per_epoch, completed=done, status="")
            sampler.set_epoch(epoch)  # the shuffle and the augmentation draws
            sampler.skip = done * cfg.accumulation * cfg.batch_size
            model.train()
            epoch_start, seen, loss_sum, correct = time.time(), 0, 0.0, 0
            # Time spent waiting for the loader: TIFF decoding must not starve the compute cores.
            batches, data_wait = iter(train_loader), 0.0
            step_loss_sum, step_seen = 0.0, 0
            for i in range(done * cfg.accumulation, steps_per_epoch * cfg.accumulation):
                fetch = time.time()
                x, y = next(batches)
                data_wait += time.time() - fetch
                # Gradients add up over `accumulation` micro-batches; DDP averages them over the
                # ranks once, on the last one (no_sync before it).
                last = (i + 1) % cfg.accumulation == 0
                x = as_model_input(x, precision)
                with model.no_sync() if ddp and not last else nullcontext():
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        logits = model(x)
                    loss = loss_fn(logits.float(), y)
                    (loss / cfg.accumulation).backward()
                seen += len(y)
                loss_sum += loss.item() * len(y)
                step_loss_sum, step_seen = step_loss_sum + loss.item() * len(y), step_seen + len(y)
                correct += (logits.argmax(1) == y).sum().item()
                if not last:
                    continue
                # The step's loss over all ranks: every rank sees a non-finite one and stops at the same step.
                step_loss_sum, step_seen = sum_over_ranks([step_loss_sum, step_seen], ddp)
                step_loss, step_loss_sum, step_seen = step_loss_sum / step_seen, 0.0, 0
                if not math.isfinite(step_loss):
                    stop_non_finite(f"the loss is {step_loss}", step + 1, epoch, out, master)
                lr = get_lr(step, total_steps, warmup, base_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                if cfg.clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if master:
                    with open(steps_path, "a", newline="") as f:
                        csv.writer(f).writerow([step, epoch, f"{step_loss:.7g}", f"{lr:.7g}"])
                bar.update(task, advance=1, status=f"loss {step_loss:.3f}  "
                                                   f"{seen / (time.time() - epoch_start):.2f} img/s")
                epoch_steps = (i + 1) // cfg.accumulation
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and epoch_steps < steps_per_epoch:
                    # The epoch's sums so far, over all ranks; a resumed rank 0 carries them on.
                    partial = sum_over_ranks([a + b for a, b in zip(carried, [
                        loss_sum, correct, seen, data_wait, time.time() - epoch_start])], ddp)
                    checkpoint_run(out, raw_model, optimizer, cfg, master, epoch, state={
                        "step": step, "epoch": epoch, "epoch_steps": epoch_steps, "epoch_sums": partial,
                        "epoch_elapsed": elapsed_before + time.time() - epoch_start,
                        "wall_s": time.time() - start, "history": history, "info": info})
                kill_for_test(rank, step)
            local_s = time.time() - epoch_start
            epoch_s = elapsed_before + local_s
            # Sums over all ranks: training loss, correct, fields seen; then validation's.
            totals = sum_over_ranks([*(a + b for a, b in zip(carried, [loss_sum, correct, seen, data_wait, local_s])),
                                     *evaluate(raw_model, val_loader, precision)], ddp)
            loss_sum, correct, seen, wait_sum, epoch_sum, val_loss_sum, val_correct, val_seen = totals
            val_loss, val_acc = (val_loss_sum / val_seen, val_correct / val_seen) if val_seen else (float("nan"),) * 2
            row = {"epoch": epoch, "step": step, "lr": round(lr, 8), "train_loss": round(loss_sum / seen, 5),
                   "train_acc": round(correct / seen, 4), "val_loss": round(val_loss, 5),
                   "val_acc": round(val_acc, 4), "images_per_s": round(seen / epoch_s, 3),
                   "data_wait": round(wait_sum / epoch_sum, 3),
                   "epoch_s": round(epoch_s, 1), "wall_s": round(time.time() - start, 1)}
            history.append(row)
            if "target_reached" not in info and val_acc >= cfg.target_acc:  # NaN (no validation) never is
                info["target_reached"] = {k: row[k] for k in ("epoch", "step", "val_acc", "wall_s")}
                console.print(f"[green]target accuracy {cfg.target_acc:.0%} reached[/] at epoch {epoch}, "
                              f"{row['wall_s'] / 60:.1f} min")
            bar.update(task, status=f"loss {row['train_loss']:.3f} train acc {row['train_acc']:.2f} "
                                    f"val acc {row['val_acc']:.2f}")
            check_finite_weights(raw_model, step, epoch, out, master)  # before weights.safetensors is replaced
            if master:
                with open(metrics_path, "a", newline="") as f:
                    csv.writer(f).writerow(row[c] for c in METRICS_COLUMNS)
                info = save_run(out, raw_model, {**info, "epochs_done": epoch, "metrics": row})
                draw_curves(metrics_path, out / "curves.png", cfg.target_acc)
                save_checkpoint(out, raw_model, optimizer, {
                    "step": step, "epoch": epoch + 1, "epoch_steps": 0, "epoch_sums": [0.0] * 5, "epoch_elapsed": 0.0,
                    "wall_s": time.time() - start, "history": history, "info": info}, cfg.keep_checkpoints)
    console.print(f"run saved in {out} ({time.time() - start:.0f} s)")
    if ddp:
        dist.destroy_process_group()
    return {"run": str(out), "run_id": info["run_id"], "history": history, "seconds": time.time() - start,
            "target_reached": info.get("target_reached"), "resumed_from": resumed["step"] if resumed else None}


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
    dist.init_process_group("gloo", store=dist.PrefixStore(f"mcnn-attempt-{attempt}", agent_store),
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))


def sum_over_ranks(values: list[float], ddp: bool) -> list[float]:
    totals = torch.tensor(values, dtype=torch.float64)
    if ddp:
        dist.all_reduce(totals)
    return totals.tolist()


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rewrite_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([row[c] for c in columns] for row in rows)

    write_atomically(path, write)


def find_checkpoint(out: Path, cfg: TrainConfig, restarted: bool, ddp: bool) -> Path | None:
    """The checkpoint to continue from (rank 0 picks it for every rank), or None for a new run."""
    if not (cfg.resume or restarted):
        return None
    if (out / STOPPED).is_file():
        stopped = json.loads((out / STOPPED).read_text())
        raise ResumeError(f"{out / STOPPED}: {stopped['message']}")
    found = list_checkpoints(out) if not ddp or dist.get_rank() == 0 else []
    step = torch.tensor([checkpoint_step(found[-1]) if found else -1])
    if ddp:
        dist.broadcast(step, src=0)
    if step.item() >= 0:
        return checkpoint_path(out, int(step.item()))
    if cfg.resume:
        raise ResumeError(f"--resume: no checkpoint in {out / CHECKPOINTS}; is {out} a run started by this "
                          f"version of `mcnn-appliance train`?")
    return None  # restarted by torchrun before the first checkpoint: start again


def check_resumable(resumed: dict, cfg: TrainConfig, world: int) -> None:
    """Refuse to continue a run with options that would change its data, recipe or schedule."""
    saved = resumed["info"]
    differences = config_differences(saved["train_config"], {**asdict(cfg), "size": list(cfg.size)},
                                     RESUME_MAY_DIFFER)
    if Path(saved["train_config"]["data"]).resolve() != Path(cfg.data).resolve():
        differences.append(f"data: {saved['train_config']['data']!r} -> {cfg.data!r}")
    global_batch = cfg.batch_size * cfg.accumulation * world
    if (saved["ranks"], saved["global_batch"]) != (world, global_batch):
        differences.append(f"ranks x global batch: {saved['ranks']} x {saved['global_batch']} -> "
                           f"{world} x {global_batch}")
    if differences:
        raise ResumeError(f"cannot resume {cfg.out} (run {saved['run_id']}): options differ from the run's: "
                          + "; ".join(differences) + ". Resume with the run's options, or start a new --out.")


def checkpoint_run(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, master: bool,
                   epoch: int, state: dict) -> None:
    """Rank 0 writes the checkpoint of `state`, if the weights are finite."""
    check_finite_weights(model, state["step"], epoch, out, master)
    if master:
        save_checkpoint(out, model, optimizer, state, cfg.keep_checkpoints)


def check_finite_weights(model: nn.Module, step: int, epoch: int, out: Path, master: bool) -> None:
    """Every rank checks (the weights are identical on all, so all stop alike)."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        stop_non_finite("the weights are not finite", step, epoch, out, master)


def stop_non_finite(what: str, step: int, epoch: int, out: Path, master: bool) -> None:
    """Stop the run, naming the step; the checkpoints written so far (all good) stay."""
    found = list_checkpoints(out)
    kept = f"the last good checkpoint is {found[-1]}" if found else "no checkpoint had been written yet"
    if (out / WEIGHTS).is_file():
        kept += f"; {out / WEIGHTS} holds the last finished epoch's weights"
    message = (f"{what} at step {step} (epoch {epoch}): training stopped; {kept}. Resuming would repeat it: "
               f"start a new run with a lower --lr.")
    if master:
        write_atomically(out / STOPPED, lambda p: p.write_text(json.dumps({"step": step, "epoch": epoch,
                                                                           "message": message}, indent=2)))
    raise FloatingPointError(message)


def kill_for_test(rank: int, step: int) -> None:
    """MCNN_TEST_KILL_AT=RANK:STEP kills that rank with SIGKILL (no clean-up, as the OOM killer would) after that
    optimizer step, on torchrun's first attempt only: the tests of resuming and of elastic restarts use it."""
    if (os.environ.get("MCNN_TEST_KILL_AT") == f"{rank}:{step}"
            and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"):
        os.kill(os.getpid(), signal.SIGKILL)


def launch(cfg: TrainConfig, plan, in_process: bool, console: Console, rdzv_endpoint: str | None = None,
           max_restarts: int = 0) -> int:
    """Train cfg in this process (one process, or one rank of a torchrun you started), or launch torchrun
    with the plan's ranks; returns the exit code. ResumeError and FloatingPointError come through."""
    if in_process:
        train(cfg, console=console, plan=plan.to_dict())
        return 0
    command = torchrun_command(cfg, plan.ranks, plan.nodes, rdzv_endpoint, plan=plan.to_dict(),
                               max_restarts=max_restarts)
    # torchrun would set OMP_NUM_THREADS=1; each rank sets its threads from its own cores anyway.
    env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads_per_rank)}
    return subprocess.run(command, env=env).returncode


def torchrun_command(cfg: TrainConfig, nproc_per_node: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
                     plan: dict | None = None, max_restarts: int = 0) -> list[str]:
    """The command that runs `train(cfg)` as nproc_per_node ranks on this node (of nnodes); after a failure
    torchrun restarts the workers up to max_restarts times, and they resume from the last checkpoint."""
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError("training on several nodes needs a rendezvous endpoint HOST:PORT (any node's address)")
    rendezvous = (["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint]
                  if nnodes > 1 else ["--standalone"])
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc_per_node), *rendezvous,
            "--max-restarts", str(max_restarts), "-m", "training.train", json.dumps({"config": asdict(cfg), "plan": plan})]


if __name__ == "__main__":  # one rank under torchrun; the argument is {"config": {TrainConfig fields}, "plan": {}}
    launch = json.loads(sys.argv[1])
    try:
        train(TrainConfig(**launch["config"]), console=Console(stderr=True), plan=launch.get("plan"))
    except (ResumeError, FloatingPointError) as exc:  # a clear line, not a traceback per rank
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)

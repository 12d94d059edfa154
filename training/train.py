"""Training the M-CNN on BBBC021-layout data, top to bottom.

    fields -> split (splits.py) -> normalisation fitted on training fields -> model
    -> epochs of (train_step x steps, evaluate, metrics row, save) -> a run folder export can read.

The pieces: recipes.py (options, optimizer, schedule), distributed.py (ranks), step.py (one
optimizer step, one evaluation pass), checkpoint.py (checkpoints, resume, the stop on a
non-finite loss), launch.py (the plan, torchrun, folds, and a rank's entry point).

Checkpoints every --checkpoint-every optimizer steps and at every epoch's end let `--resume` (or
torchrun restarting the workers after a failure) continue exactly where the run stopped. A
non-finite loss or weight stops the run, keeping the last good checkpoint.
"""

from __future__ import annotations

import platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

import appliance
from appliance.fieldsets import SPLIT_CSV
from appliance.files import write_json
from appliance.imageio import read_field
from appliance.layouts.base import CHANNELS
from appliance.layouts.bbbc021 import class_names, load_fields
from appliance.normalization import Normalization, fit_normalization
from training.checkpoint import (
    STOPPED,
    ResumeError,
    check_finite_weights,
    check_resumable,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
    stop_non_finite,
)
from training.curves import draw_curves
from training.dataset import EpochSampler, FieldDataset
from training.distributed import Ranks, end_ranks, restarted, start_ranks, sum_over_ranks
from training.model import MCNN, MCNNConfig, count_parameters
from training.process import keep_freed_memory, set_threads
from training.recipes import TrainConfig, get_lr, make_loss, make_optimizer, peak_lr, resolve_recipe, warmup_steps
from training.run import save_run
from training.splits import select_split, spread_sample, write_split
from training.step import evaluate, resolve_precision, train_step
from training.tables import append_row, read_csv, write_dicts

METRICS_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "images_per_s",
    "data_wait",
    "epoch_s",
    "wall_s",
)  # data_wait: fraction of the epoch
STEPS_COLUMNS = ("step", "epoch", "loss", "lr")  # steps.csv: every optimizer step's loss (mean over its fields)
METRICS_CSV, STEPS_CSV, PLAN_JSON = "metrics.csv", "steps.csv", "plan.json"

AfterStep = Callable[[int], None]  # called with the optimizer step just taken (and checkpointed)


@dataclass
class Data:
    """The run's fields as loaders: this rank's share of every epoch's shuffle, and of validation."""

    labels: list[str]
    normalization: Normalization
    train_fields: int
    val_fields: int
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader | list


@dataclass
class Loop:
    """What the epochs of a run share: built once by train(), advanced by train_epoch."""

    cfg: TrainConfig
    ranks: Ranks
    out: Path
    model: nn.Module  # DistributedDataParallel(raw_model) under torchrun
    raw_model: MCNN
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    precision: str
    data: Data
    steps_per_epoch: int
    schedule: Callable[[int], float]  # the learning rate of an optimizer step
    start: float  # time.time() of the run's start (a resumed run's, moved by the time it was stopped)
    info: dict  # run.json
    console: Console
    step: int = 0
    lr: float = 0.0
    history: list[dict] = field(default_factory=list)
    after_step: Sequence[AfterStep] = ()


def train(
    cfg: TrainConfig, console: Console | None = None, plan: dict | None = None, after_step: Sequence[AfterStep] = ()
) -> dict:
    """Train as one process, or as one rank under torchrun; `plan` (training/plan.py) is saved as plan.json.
    `after_step` hooks run after every optimizer step (and its checkpoint), with the step's number."""
    console = console or Console()
    start = time.time()
    cfg = resolve_recipe(cfg)
    ranks = start_ranks(cfg.batch_size, cfg.accumulation)
    if not ranks.master:  # only rank 0 writes files and shows progress
        console = Console(quiet=True)
    threads, allocator = set_threads(cfg.threads), keep_freed_memory()
    precision = resolve_precision(cfg.precision)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    checkpoint = find_checkpoint(out, cfg, restarted(), ranks)
    resumed = read_checkpoint_state(checkpoint) if checkpoint else None
    if resumed:
        check_resumable(resumed, cfg, ranks.world)
    if ranks.master:
        prepare_folder(out, resumed, plan)
    data = load_data(cfg, ranks, out)

    size = tuple(cfg.size)
    raw_model = MCNN(
        MCNNConfig(height=size[0], width=size[1], in_channels=len(CHANNELS), num_classes=len(data.labels))
    ).to(memory_format=torch.channels_last)
    model = DistributedDataParallel(raw_model) if ranks.ddp else raw_model  # DDP: same start weights on every rank
    optimizer = make_optimizer(raw_model, cfg)
    global_batch = cfg.batch_size * cfg.accumulation * ranks.world
    base_lr = peak_lr(cfg, global_batch)
    steps_per_epoch = len(data.train_loader) // cfg.accumulation  # a partial accumulation at the end is dropped
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(data.train_loader)} micro-batch(es) per rank per epoch cannot make one step of "
            f"{cfg.accumulation}: lower the accumulation or the batch size"
        )
    total_steps = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg.warmup_epochs, steps_per_epoch)
    if resumed:
        if resumed["info"]["normalization"] != data.normalization.to_dict():
            raise ResumeError(
                f"{checkpoint}: the normalisation fitted on the training fields now differs from the "
                f"run's; were the files in {cfg.data} changed?"
            )
        load_checkpoint(checkpoint, raw_model, optimizer)  # weights, optimizer state, RNG states
        start = time.time() - resumed["wall_s"]  # wall_s counts training time, not the time the run was stopped
    info = run_info(
        cfg,
        ranks,
        data,
        resumed,
        precision=precision,
        threads=threads,
        allocator=allocator,
        global_batch=global_batch,
        base_lr=base_lr,
    )
    loop = Loop(
        cfg,
        ranks,
        out,
        model,
        raw_model,
        optimizer,
        make_loss(cfg),
        precision,
        data,
        steps_per_epoch,
        schedule=lambda step: get_lr(step, total_steps, warmup, base_lr),
        start=start,
        info=info,
        console=console,
        step=resumed["step"] if resumed else 0,
        history=resumed["history"] if resumed else [],
        after_step=after_step,
    )

    layout = f"{threads} threads, batch {cfg.batch_size}"
    if ranks.ddp or cfg.accumulation > 1:
        layout = (
            f"{ranks.world} rank(s) x {threads} threads, micro-batch {cfg.batch_size} x {cfg.accumulation} "
            f"accumulated x {ranks.world} = global batch {global_batch}"
        )
    console.print(
        f"[bold]M-CNN[/] {size[0]}x{size[1]}, {count_parameters(raw_model) / 1e6:.1f} M parameters, "
        f"{len(data.labels)} classes; {data.train_fields} training / {data.val_fields} validation fields; "
        f"{precision}, {layout}, {allocator}; recipe {cfg.recipe}: {cfg.optimizer} lr {base_lr:g}, "
        f"weight decay {cfg.weight_decay:g}, warmup {warmup} steps"
    )
    if resumed:
        console.print(
            f"resuming run {info['run_id']} at step {resumed['step']} (epoch {resumed['epoch']}) from {checkpoint}"
        )
    if ranks.master:  # a resumed run's files are cut back to its checkpoint: every epoch and step appears once
        write_dicts(out / METRICS_CSV, METRICS_COLUMNS, loop.history)
        write_dicts(
            out / STEPS_CSV,
            STEPS_COLUMNS,
            [r for r in read_csv(out / STEPS_CSV) if int(r["step"]) <= loop.step] if resumed else [],
        )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        for epoch in range(resumed["epoch"] if resumed else 1, cfg.epochs + 1):
            train_epoch(loop, epoch, resumed if resumed and epoch == resumed["epoch"] else None, bar)
    console.print(f"run saved in {out} ({time.time() - start:.0f} s)")
    end_ranks(ranks)
    return {
        "run": str(out),
        "run_id": loop.info["run_id"],
        "history": loop.history,
        "seconds": time.time() - start,
        "target_reached": loop.info.get("target_reached"),
        "resumed_from": resumed["step"] if resumed else None,
    }


def prepare_folder(out: Path, resumed: dict | None, plan: dict | None) -> None:
    """Rank 0: the run folder; a new run in it never resumes an older run's checkpoints."""
    out.mkdir(parents=True, exist_ok=True)
    if not resumed:
        for old in list_checkpoints(out):
            old.unlink()
        (out / STOPPED).unlink(missing_ok=True)
    if plan:
        write_json(out / PLAN_JSON, plan)


def load_data(cfg: TrainConfig, ranks: Ranks, out: Path) -> Data:
    """Labelled fields, the held-out set (stratified, NSC or NSCB; rank 0 writes split.csv), the normalisation
    fitted on training fields; each rank trains on its share of every epoch and validates every world-th field."""
    fields = load_fields(Path(cfg.data))
    if not fields:
        raise ValueError(f"{cfg.data}: no labelled fields (image table joined with MoA table is empty)")
    labels = class_names(fields)
    train_fields, val_fields = select_split(fields, cfg.split, cfg.fold, cfg.val_fraction, cfg.seed)
    if ranks.master:
        write_split(out / SPLIT_CSV, train_fields, val_fields)
    size = tuple(cfg.size)
    normalization = fit_normalization(read_field(f.paths, size) for f in spread_sample(train_fields, cfg.norm_fields))
    train_set = FieldDataset(
        train_fields, labels, size, normalization, augment=True, gain_jitter=cfg.gain_jitter, seed=cfg.seed
    )
    val_set = FieldDataset(val_fields, labels, size, normalization)
    sampler = EpochSampler(train_set, ranks.world, ranks.rank, seed=cfg.seed)
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    # The generator only seeds the loader's workers, which draw nothing: a checkpoint need not hold it.
    train_loader = DataLoader(
        train_set,
        sampler=sampler,
        drop_last=len(sampler) > cfg.batch_size,
        generator=torch.Generator().manual_seed(cfg.seed),
        **loader_args,
    )
    val_loader = (
        DataLoader(Subset(val_set, range(ranks.rank, len(val_set), ranks.world)), **loader_args) if val_fields else []
    )
    return Data(labels, normalization, len(train_fields), len(val_fields), sampler, train_loader, val_loader)


def run_info(
    cfg: TrainConfig,
    ranks: Ranks,
    data: Data,
    resumed: dict | None,
    *,
    precision: str,
    threads: int,
    allocator: str,
    global_batch: int,
    base_lr: float,
) -> dict:
    """run.json's content: a new run's, or the resumed run's (its id, its time to accuracy) with the resume added."""
    config = {**asdict(cfg), "size": list(cfg.size)}
    if resumed:
        return {
            **resumed["info"],
            "train_config": config,
            "threads": threads,
            "allocator": allocator,
            "resumes": resumed["info"].get("resumes", [])
            + [
                {
                    "step": resumed["step"],
                    "at": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
                    "elastic_restart": restarted(),
                }
            ],
        }
    return {
        "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "labels": data.labels,
        "channels": list(CHANNELS),
        "normalization": data.normalization.to_dict(),
        "train_config": config,
        "precision": precision,
        "threads": threads,
        "allocator": allocator,
        "ranks": ranks.world,
        "global_batch": global_batch,
        "peak_lr": base_lr,
        "fields": {"train": data.train_fields, "val": data.val_fields},
        "versions": {
            "mcnn_appliance": appliance.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def train_epoch(loop: Loop, epoch: int, resumed: dict | None, bar: Progress) -> None:
    """One epoch's optimizer steps (the rest of them, in the epoch a run resumes in), then its row and its save.
    Sums carried over the epoch: loss, correct, fields, seconds waiting for the loader, seconds."""
    cfg, ranks = loop.cfg, loop.ranks
    done = resumed["epoch_steps"] if resumed else 0  # a resumed epoch skips the steps already trained
    carried = resumed["epoch_sums"] if resumed and ranks.master else [0.0] * 5  # and carries their sums (rank 0)
    elapsed_before = resumed["epoch_elapsed"] if resumed else 0.0
    task = bar.add_task(f"epoch {epoch}/{cfg.epochs}", total=loop.steps_per_epoch, completed=done, status="")
    loop.data.sampler.set_epoch(epoch)  # the shuffle and the augmentation draws
    loop.data.sampler.skip = done * cfg.accumulation * cfg.batch_size
    loop.model.train()
    epoch_start, sums = time.time(), [0.0] * 4
    batches = iter(loop.data.train_loader)
    for epoch_steps in range(done + 1, loop.steps_per_epoch + 1):
        loop.lr = loop.schedule(loop.step)
        stats = train_step(
            loop.model,
            loop.optimizer,
            loop.loss_fn,
            batches,
            loop.lr,
            accumulation=cfg.accumulation,
            precision=loop.precision,
            clip_grad=cfg.clip_grad,
            ranks=ranks,
            on_non_finite=lambda loss: stop_non_finite(
                f"the loss is {loss}", loop.step + 1, epoch, loop.out, ranks.master
            ),
        )
        loop.step += 1
        sums = [a + b for a, b in zip(sums, (stats.loss_sum, stats.correct, stats.seen, stats.data_wait), strict=True)]
        if ranks.master:
            append_row(loop.out / STEPS_CSV, [loop.step, epoch, f"{stats.loss:.7g}", f"{loop.lr:.7g}"])
        bar.update(task, advance=1, status=f"loss {stats.loss:.3f}  {sums[2] / (time.time() - epoch_start):.2f} img/s")
        if cfg.checkpoint_every and loop.step % cfg.checkpoint_every == 0 and epoch_steps < loop.steps_per_epoch:
            # The epoch's sums so far, over all ranks; a resumed rank 0 carries them on.
            so_far = [*sums, time.time() - epoch_start]
            partial = sum_over_ranks([a + b for a, b in zip(carried, so_far, strict=True)], ranks)
            check_finite_weights(loop.raw_model, loop.step, epoch, loop.out, ranks.master)
            save(
                loop,
                {
                    "epoch": epoch,
                    "epoch_steps": epoch_steps,
                    "epoch_sums": partial,
                    "epoch_elapsed": elapsed_before + time.time() - epoch_start,
                },
            )
        for hook in loop.after_step:
            hook(loop.step)
    local_s = time.time() - epoch_start
    totals = sum_over_ranks(
        [
            *(a + b for a, b in zip(carried, [*sums, local_s], strict=True)),
            *evaluate(loop.raw_model, loop.data.val_loader, loop.precision),
        ],
        ranks,
    )
    row = metrics_row(loop, epoch, totals, elapsed_before + local_s)
    loop.history.append(row)
    if "target_reached" not in loop.info and row["val_acc"] >= cfg.target_acc:  # NaN (no validation) never is
        loop.info["target_reached"] = {k: row[k] for k in ("epoch", "step", "val_acc", "wall_s")}
        loop.console.print(
            f"[green]target accuracy {cfg.target_acc:.0%} reached[/] at epoch {epoch}, {row['wall_s'] / 60:.1f} min"
        )
    bar.update(
        task, status=f"loss {row['train_loss']:.3f} train acc {row['train_acc']:.2f} val acc {row['val_acc']:.2f}"
    )
    check_finite_weights(loop.raw_model, loop.step, epoch, loop.out, ranks.master)  # before the weights are replaced
    if ranks.master:
        write_dicts(loop.out / METRICS_CSV, METRICS_COLUMNS, loop.history)
        loop.info = save_run(loop.out, loop.raw_model, {**loop.info, "epochs_done": epoch, "metrics": row})
        draw_curves(loop.out / METRICS_CSV, loop.out / "curves.png", cfg.target_acc)
        save(loop, {"epoch": epoch + 1, "epoch_steps": 0, "epoch_sums": [0.0] * 5, "epoch_elapsed": 0.0})


def metrics_row(loop: Loop, epoch: int, totals: list[float], epoch_s: float) -> dict:
    """metrics.csv's row from the epoch's sums over all ranks: training's, then validation's."""
    loss_sum, correct, seen, wait_sum, epoch_sum, val_loss_sum, val_correct, val_seen = totals
    val_loss, val_acc = (val_loss_sum / val_seen, val_correct / val_seen) if val_seen else (float("nan"),) * 2
    return {
        "epoch": epoch,
        "step": loop.step,
        "lr": round(loop.lr, 8),
        "train_loss": round(loss_sum / seen, 5),
        "train_acc": round(correct / seen, 4),
        "val_loss": round(val_loss, 5),
        "val_acc": round(val_acc, 4),
        "images_per_s": round(seen / epoch_s, 3),
        "data_wait": round(wait_sum / epoch_sum, 3),
        "epoch_s": round(epoch_s, 1),
        "wall_s": round(time.time() - loop.start, 1),
    }


def save(loop: Loop, where: dict) -> None:
    """Rank 0 writes the checkpoint of the loop's step (`where`: epoch, epoch_steps, epoch_sums, epoch_elapsed)."""
    if loop.ranks.master:
        save_checkpoint(
            loop.out,
            loop.raw_model,
            loop.optimizer,
            {
                "step": loop.step,
                **where,
                "wall_s": time.time() - loop.start,
                "history": loop.history,
                "info": loop.info,
            },
            loop.cfg.keep_checkpoints,
        )

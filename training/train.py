"""Training the M-CNN on BBBC021-layout data, top to bottom.

    fields -> split (splits.py) -> normalisation fitted on training fields -> model
    -> epochs of (train_step x steps, evaluate, metrics row, save) -> a run folder export can read.

The pieces: recipes.py (options, optimizer, schedule), dataset.py (the fields as loaders),
distributed.py (ranks), step.py (one optimizer step, one evaluation pass), records.py (run.json,
metrics.csv, steps.csv), checkpoint.py (checkpoints, resume, the stop on a non-finite loss),
launch.py (the plan, torchrun, folds, and a rank's entry point).

Checkpoints every --checkpoint-every optimizer steps and at every epoch's end let `--resume` (or
torchrun restarting the workers after a failure) continue exactly where the run stopped. A
non-finite loss or weight stops the run, keeping the last good checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from appliance.files import write_json
from appliance.layouts.base import CHANNELS
from training.checkpoint import (
    STOPPED,
    ResumeError,
    check_finite_weights,
    check_resumable,
    find_checkpoint,
    keep_global_batch,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
    stop_non_finite,
)
from training.curves import draw_curves
from training.dataset import Data, load_data
from training.distributed import Ranks, end_ranks, restarted, start_ranks, sum_over_ranks
from training.model import MCNN, MCNNConfig, count_parameters
from training.process import keep_freed_memory, set_threads
from training.recipes import TrainConfig, get_lr, make_loss, make_optimizer, peak_lr, resolve_recipe, warmup_steps
from training.records import Setup, log_step, metrics_row, run_info, start_tables, write_metrics
from training.run import save_run
from training.step import evaluate, resolve_precision, train_step

PLAN_JSON = "plan.json"
AfterStep = Callable[[int], None]  # called with the optimizer step just taken (and checkpointed)


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
        if restarted():  # torchrun may go on with fewer nodes (--nnodes MIN:MAX)
            cfg = keep_global_batch(cfg, resumed, ranks.world)
        check_resumable(resumed, cfg, ranks.world, elastic=restarted())
    if ranks.master:
        prepare_folder(out, resumed, plan)
    data = load_data(cfg, ranks, out)

    size = tuple(cfg.size)
    raw_model = MCNN(
        MCNNConfig(
            height=size[0],
            width=size[1],
            in_channels=len(CHANNELS),
            num_classes=len(data.labels),
            field_norm=cfg.field_norm,
            global_pool=cfg.global_pool,
        )
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
    info = run_info(cfg, ranks, data, Setup(precision, threads, allocator, global_batch, base_lr), resumed)
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
    if ranks.master:
        start_tables(out, loop.history, loop.step, bool(resumed))

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
            log_step(loop.out, loop.step, epoch, stats.loss, loop.lr)
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
    row = metrics_row(epoch, loop.step, loop.lr, totals, elapsed_before + local_s, time.time() - loop.start)
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
        metrics_csv = write_metrics(loop.out, loop.history)
        loop.info = save_run(loop.out, loop.raw_model, {**loop.info, "epochs_done": epoch, "metrics": row})
        draw_curves(metrics_csv, loop.out / "curves.png", cfg.target_acc)
        save(loop, {"epoch": epoch + 1, "epoch_steps": 0, "epoch_sums": [0.0] * 5, "epoch_elapsed": 0.0})


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

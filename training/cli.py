"""The training commands, `train` and `evaluate`, registered into `mcnn-appliance` by entry point.

This module imports only typer and the runtime: torch and the training code are imported when a
command runs, so `mcnn-appliance --help` stays fast and a runtime-only install names the extra.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from appliance.command_help import Command, commands_app, example
from appliance.console import EXIT_SOME_FAILED, console, extra_needed, fail, parse_size, print_table, say, warn
from appliance.tables import MetadataError

commands = commands_app()
# The precisions train takes, spelt as every command spells them; fp32 is the old spelling, still taken.
TRAIN_PRECISIONS = {"auto": "auto", "bf16": "bf16", "f32": "fp32"}  # our word -> training's (step.py)


def train_precision(value: str) -> str:
    if value == "fp32":
        console.print("[yellow]--precision fp32 is now spelt f32 (as in classify); fp32 will stop working")
        value = "f32"
    if value not in TRAIN_PRECISIONS:
        raise typer.BadParameter(f"{value!r}: choose one of {', '.join(TRAIN_PRECISIONS)}")
    return TRAIN_PRECISIONS[value]


@commands.command(cls=Command, epilog=example("mcnn-appliance train data/ --out runs/first --epochs 4"))
def train(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA", help="Folder with BBBC021_v1_image.csv, BBBC021_v1_moa.csv and the Week folders."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            metavar="RUN",
            help="Run folder to write. One that already holds files is refused (the message names the next free "
            "folder, e.g. runs/first-2) unless --resume or --overwrite.",
        ),
    ],
    epochs: Annotated[int, typer.Option(help="Passes over the training fields.")] = 4,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Micro-batch: fields per forward pass on each rank (the "
            "plan lowers it, and accumulates, if memory is short)."
        ),
    ] = 4,
    accumulation: Annotated[
        int, typer.Option(help="Micro-batches per optimizer step; global batch = batch size x accumulation x ranks.")
    ] = 1,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="HxW",
            help="Field size, height x width (default: the data's, read from every TIFF header; all must agree).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same split, initial weights and shuffles.")] = 0,
    recipe: Annotated[
        str | None,
        typer.Option(
            metavar="[adamw|paper]",
            help="Optimizer and schedule: adamw (the default; AdamW "
            "3e-4, tuned for the demo) or paper (Nesterov SGD, 0.01 "
            "per 256 fields scaled linearly, 2 warmup epochs). The "
            "options below override it.",
        ),
    ] = None,
    optimizer: Annotated[str | None, typer.Option(metavar="[adamw|sgd]", help="adamw or sgd (Nesterov).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate at --lr-reference-batch.")] = None,
    lr_scaling: Annotated[
        str | None,
        typer.Option(
            metavar="[none|linear]", help="none, or linear: peak rate = lr x global batch / --lr-reference-batch."
        ),
    ] = None,
    lr_reference_batch: Annotated[int | None, typer.Option(help="The global batch --lr is given for.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (weights, not biases).")] = None,
    warmup_epochs: Annotated[
        float | None, typer.Option(help="Linear warmup (epochs, fractions allowed), then cosine decay.")
    ] = None,
    clip_grad: Annotated[float, typer.Option(help="Clip the gradient norm to this; 0 = off.")] = 0.0,
    precision: Annotated[
        str,
        typer.Option(
            metavar="[auto|f32|bf16]",
            callback=train_precision,
            help="auto: bf16 where the CPU has it natively, else f32.",
        ),
    ] = "auto",
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = 1,
    target_acc: Annotated[
        float,
        typer.Option(help="Validation accuracy whose first epoch and wall time the run records (time to accuracy)."),
    ] = 0.99,
    gain_jitter: Annotated[
        float, typer.Option(help="Augmentation: each stain's gain x exp(U(-j, j)); 0 turns it off.")
    ] = 0.15,
    field_norm: Annotated[
        bool,
        typer.Option(
            "--field-norm/--no-field-norm",
            help="The network standardises each stain of each field first (removes every field's own gains).",
        ),
    ] = True,
    global_pool: Annotated[
        bool,
        typer.Option(
            "--global-pool/--no-global-pool",
            help="Average the fused grid into one vector instead of the paper's flatten "
            "(fewer weights, the same for every position of the field).",
        ),
    ] = False,
    global_batch: Annotated[
        int | None,
        typer.Option(
            help="Fields per optimizer step over all ranks "
            "(default: batch size x accumulation x ranks); "
            "the plan picks micro-batch and accumulation."
        ),
    ] = None,
    memory_gb: Annotated[
        float | None,
        typer.Option(help="Memory for training on each node (default: available RAM minus 10 %, at least 1 GB)."),
    ] = None,
    nproc_per_node: Annotated[
        int, typer.Option(help="Training processes (ranks) on this node; more than one launches torchrun.")
    ] = 1,
    nnodes: Annotated[
        str,
        typer.Option(
            help="Nodes; run the same command on every node. MIN:MAX (e.g. 1:2): with --max-restarts, "
            "training goes on with fewer nodes after one is lost (from the last checkpoint)."
        ),
    ] = "1",
    rdzv_endpoint: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="HOST:PORT every node can reach (with --nnodes > 1).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            metavar="[stratified|nsc|nscb]",
            help="stratified (a random fifth of every class held out), nsc "
            "(not-same-compound) or nscb (not-same-compound-or-batch).",
        ),
    ] = "stratified",
    fold: Annotated[
        str | None,
        typer.Option(
            metavar="K|all",
            help="nsc/nscb: the compound held out, as an index into "
            "the compounds sorted by name (DMSO excluded), or "
            "all: one run per fold in OUT/fold-K.",
        ),
    ] = None,
    val_data: Annotated[
        Path | None,
        typer.Option(
            metavar="PLATES",
            help="Validate each epoch on all labelled fields of these plates (other weeks, other compounds) "
            "instead of a split of DATA; `evaluate RUN` scores them too.",
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option(help="Optimizer steps between checkpoints in OUT/checkpoints (0: only at epoch ends).", min=0)
    ] = 100,
    keep_checkpoints: Annotated[int, typer.Option(help="Newest checkpoints kept.", min=1)] = 2,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint (same options).")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Delete the run already in --out first (weights, checkpoints, export/, evaluation/)."
        ),
    ] = False,
    max_restarts: Annotated[
        int,
        typer.Option(
            help="With torchrun: restart the ranks this many times after "
            "a failure; they resume from the last checkpoint.",
            min=0,
        ),
    ] = 0,
):
    """Train the M-CNN on labelled fields; writes weights, config, metrics, split and plan to --out."""
    arguments = dict(locals())  # each option named as the TrainConfig or LaunchOptions field it sets, but fold
    with extra_needed("train"):
        from training.launch import LaunchOptions, OptionError, train_folds
        from training.recipes import DEFAULT_RECIPE, TrainConfig

    del arguments["fold"]  # K or all: train_folds sets each run's fold
    size = parse_size(size) if size else None  # None: the data's
    arguments.update(data=str(data.resolve()), out=str(out), size=size, recipe=recipe or DEFAULT_RECIPE)
    arguments["val_data"] = str(val_data.resolve()) if val_data else None
    cfg, options = by_name(TrainConfig, arguments), by_name(LaunchOptions, arguments)
    try:
        code = train_folds(cfg, options, fold, console)
    except OptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    except ValueError as exc:  # a plan that does not fit, SplitError, MetadataError, a bad recipe: nothing ran
        raise fail(exc) from None
    raise typer.Exit(code)


def by_name(cls, arguments: dict):
    """A dataclass built from the arguments named as its fields."""
    return cls(**{f.name: arguments[f.name] for f in fields(cls) if f.name in arguments})


@commands.command(cls=Command, epilog=example("mcnn-appliance evaluate runs/first --split val"))
def evaluate(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Run folder written by `train` (or by `train --fold all`: "
            "the folds pooled), or an export folder holding model.xml.",
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="DATA",
            help="BBBC021-layout labelled plates to score on (default: the data the run was trained on). "
            "The run's own data (moved, say) is scored by --split; other plates on all their labelled fields "
            "but those the run trained on, into evaluation/on-NAME/.",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(metavar="[val|train|all]", help="The split.csv fields to score: val, train or all.")
    ] = "val",
    batch_size: Annotated[int, typer.Option(help="Fields per forward pass.")] = 4,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also score the classic baseline (training/baseline.py).")
    ] = False,
):
    """Score a run or its export on its held-out fields or on other labelled plates (--data): field and
    treatment accuracy, per class, confusion matrices; the embeddings' NSC and NSCB 1-NN accuracy and mAP."""
    with extra_needed("evaluate"):
        import training.baseline as classic
        import training.evaluate as evaluation
        import training.profile_metrics as profile_metrics

    try:
        summary = evaluation.evaluate_run(run, data, split, batch_size)
        summary = classic.add_to_evaluation(run, summary, data, split) if baseline else summary
    except (evaluation.EvaluationError, MetadataError, FileNotFoundError, RuntimeError, ValueError) as exc:
        raise fail(exc) from None
    print_table(evaluation.table(summary))  # the table on stdout, notes on stderr
    print_table(profile_metrics.table(summary))  # beside the classifier's treatment accuracy
    if baseline:
        print_table(classic.side_by_side(summary))
    say(f"scored: {summary['scored']}")
    say(f"evaluation written to {summary['out']}")
    if summary["failed"]:
        warn(
            f"{len(summary['failed'])} field(s) could not be read and were not scored; "
            f"see {summary['out']}/evaluation.json"
        )
        raise typer.Exit(EXIT_SOME_FAILED)

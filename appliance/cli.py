"""The `mcnn-appliance` command: the runtime's commands (synth, classify, merge, watch), then the
commands the training and export packages register (train, evaluate, export, benchmark, demo).

Commands are thin: they parse options and call one function. The runtime never imports training/
or export/; their commands arrive through the `mcnn_appliance.commands` entry points, so a
runtime-only install still lists them and names the extra each needs (appliance/console.py).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import appliance
from appliance.classify import classify_plate, parse_shard
from appliance.console import (
    EXIT_NOTHING_RAN,
    EXIT_OK,
    EXIT_SOME_FAILED,
    console,
    error,
    fail,
    installed_commands,
    parse_size,
)
from appliance.inference import Classifier
from appliance.merge import MergeError, merge_results
from appliance.model_card import ModelCardError
from appliance.plate import LAYOUTS, PlateError, plate_folders, plate_name
from appliance.results import ResultsError
from appliance.synth import write_dataset
from appliance.watch import Watcher, WatchError, WatchOptions, plate_options, stop_on_signals

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Classify microscopy screening plates with the multiscale CNN (M-CNN) on CPU servers.",
)


def version_callback(value: bool):
    if value:
        print(f"mcnn-appliance {appliance.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = None,
):
    pass


SizeOption = Annotated[str, typer.Option(help="Field size HEIGHTxWIDTH (BBBC021: 1024x1280).")]


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the plates and CSVs into.")],
    plates: Annotated[int, typer.Option(help="Number of plates (each in its own week).")] = 3,
    fields_per_class: Annotated[int, typer.Option(help="Fields per class on each plate.")] = 8,
    size: SizeOption = "1024x1280",
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes rendering in parallel.")] = 1,
):
    """Write synthetic BBBC021-like plates: 16-bit TIFFs under the real names, plus the two CSVs."""
    summary = write_dataset(
        out, plates=plates, fields_per_class=fields_per_class, size=parse_size(size), seed=seed, workers=workers
    )
    console.print(
        f"wrote {summary['fields']} fields on {len(summary['plates'])} plates to {out} in {summary['seconds']:.0f} s"
    )


# How a plate is read and classified: the options classify and watch share (SHARED_OPTIONS below; watch
# also reads them from mcnn-watch.toml in its inbox). classify_plate takes them under the same names.
PrecisionOption = Annotated[
    str | None, typer.Option(help="f32 (the default), bf16 (where the CPU has it) or int8 (model-int8.xml).")
]
LayoutOption = Annotated[str | None, typer.Option(help=f"{', '.join(LAYOUTS)} (the default: auto); see README.")]
ChannelsOption = Annotated[
    str | None, typer.Option(help="Plate channel (id or name) of each model channel, e.g. DAPI=w1,Tubulin=w2,Actin=w4.")
]
PlatemapOption = Annotated[
    Path | None, typer.Option(help="CSV with columns well, compound, concentration (optional plate).")
]
FitOption = Annotated[
    str | None,
    typer.Option(
        help="Fields of another size: pad (zeros, centred) or resize (keeps aspect, then pads); "
        "recorded per field in Metadata_Fit."
    ),
]
PlaneOption = Annotated[int | None, typer.Option(help="The z-plane to read, as the imager numbers them.")]
TimepointOption = Annotated[int | None, typer.Option(help="The time point to read, as the imager numbers them.")]
ProjectOption = Annotated[str | None, typer.Option(help="max: maximum-intensity projection over every z-plane.")]
EmbeddingsOption = Annotated[
    bool, typer.Option("--embeddings", help="Also write embeddings.parquet (512 features per field).")
]
SHARED_OPTIONS = {  # name: (type and help, default), in --help's order
    "precision": (PrecisionOption, None),
    "layout": (LayoutOption, None),
    "channels": (ChannelsOption, None),
    "platemap": (PlatemapOption, None),
    "fit": (FitOption, None),
    "plane": (PlaneOption, None),
    "timepoint": (TimepointOption, None),
    "project": (ProjectOption, None),
    "embeddings": (EmbeddingsOption, False),
}


def with_plate_options(command):
    """Give a command the options classify and watch share (SHARED_OPTIONS), as keyword parameters: Typer reads
    a command's options from its signature, so they are added to it here instead of written out twice."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]  # not **shared
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in SHARED_OPTIONS.items()
    ]
    command.__signature__ = signature.replace(parameters=[*own, *shared])
    command.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in shared}}
    return command


@app.command()
@with_plate_options
def classify(
    plates: Annotated[
        list[Path],
        typer.Argument(
            help="Plate folder(s), folder(s) of plate folders, or CSV(s) listing a plate (manifest, LoadData); "
            "see README, Plate layouts."
        ),
    ],
    model: Annotated[Path, typer.Option(help="Export folder holding model.xml (or the .xml itself).")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Results folder (default: <plate>-results beside each plate; with several plates, "
            "one sub-folder per plate)."
        ),
    ] = None,
    shard: Annotated[
        str,
        typer.Option(
            help="I/N: classify only shard I (0..N-1) of N, split by well and site; join the shards with `merge`. "
            "auto: this task's shard of a Slurm job array (sbatch --array=0-N)."
        ),
    ] = "0/1",
    force: Annotated[bool, typer.Option("--force", help="Redo every field, even those already done in --out.")] = False,
    chunk_fields: Annotated[int, typer.Option(help="Fields per committed chunk (redone at most after a crash).")] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or summary lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    **shared,
):
    """Classify every field of one or more plates with OpenVINO; rerun the same command to resume."""
    precision = shared.pop("precision") or "f32"
    passed_on = {"force": force, "chunk_fields": chunk_fields, **shared}
    passed_on["layout"] = check_plate_options(shared["layout"] or "auto", shared["fit"])
    try:
        plates = plate_folders(plates)
    except PlateError as exc:
        raise fail(exc) from None
    try:
        the_shard = parse_shard(shard)
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError, ValueError) as exc:
        raise fail(exc) from None
    summaries, code = [], EXIT_OK
    with stop_on_signal() as stop:
        for plate in plates:
            plate_out = out if out is None or len(plates) == 1 else out / plate_name(plate)
            options = {**passed_on, "shard": the_shard, "stop": stop}
            try:
                if quiet:
                    summary = classify_plate(plate, classifier, plate_out, **options)
                else:
                    summary = run_with_progress(classify_plate, plate, classifier, plate_out, **options)
            except (OSError, ValueError, RuntimeError) as exc:  # PlateError, ModelCardError: ValueError; ResultsError
                error(exc)
                code = max(code, EXIT_NOTHING_RAN if len(plates) == 1 else EXIT_SOME_FAILED)
                continue
            summaries.append(summary)
            counts = summary["counts"]
            if not quiet:
                console.print(
                    f"{summary['plate']}: {counts['classified']} fields classified "
                    f"({counts['skipped_done']} done earlier), {counts['failed']} failed "
                    f"({summary['fields_per_s']:.2f} fields/s, {summary['precision']}) -> {summary['out']}"
                )
            if counts["failed"]:
                if not quiet:
                    console.print(
                        f"[yellow]{counts['failed']} field(s) failed; see {Path(summary['out']) / 'failures.csv'}"
                    )
                code = max(code, EXIT_SOME_FAILED)
            if summary["interrupted"]:
                console.print(f"[yellow]{summary['plate']}: stopped; rerun the same command to finish")
                code = max(code, EXIT_SOME_FAILED)
                break
    if as_json:
        print(json.dumps(summaries[0] if len(plates) == 1 and summaries else summaries, indent=2, default=str))
    raise typer.Exit(code)


@app.command()
def merge(
    out_dirs: Annotated[list[Path], typer.Argument(help="Results folders of `classify --shard I/N`.")],
    out: Annotated[Path, typer.Option(help="Merged results folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
):
    """Merge the shards of one plate into one results folder (refuses overlaps and mixed models)."""
    try:
        summary = merge_results(out_dirs, out)
    except (MergeError, ResultsError, OSError) as exc:
        raise fail(exc) from None
    counts, code = summary["counts"], EXIT_OK
    console.print(
        f"{summary['plate']}: {counts['classified']} fields, {counts['failed']} failed, from "
        f"{len(summary['merged_from'])} folders -> {summary['out']}"
    )
    for problem, folders in (
        ("missing shards", summary["missing_shards"]),
        ("interrupted shards (rerun them)", summary["incomplete_shards"]),
    ):
        if folders:
            console.print(f"[yellow]{problem}: {', '.join(folders)}")
            code = EXIT_SOME_FAILED
    if counts["failed"]:
        code = EXIT_SOME_FAILED
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    raise typer.Exit(code)


@contextlib.contextmanager
def stop_on_signal():
    """An Event set by the first Ctrl-C or SIGTERM, so classify commits the fields in flight and stops."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        console.print("[yellow]stopping after the fields in flight (again to abort)")
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@app.command()
@with_plate_options
def watch(
    inbox: Annotated[Path, typer.Argument(help="Folder the imager writes plate folders into.")],
    model: Annotated[Path, typer.Option(help="Export folder holding model.xml.")],
    out: Annotated[Path, typer.Option(help="Results folder: one sub-folder per plate and watch-ledger.json.")],
    marker: Annotated[str, typer.Option(help="A file of this name in a plate folder marks it complete.")] = "COMPLETE",
    quiet: Annotated[
        float,
        typer.Option(
            help="Seconds without any file changing that also mark a plate complete; 0: only the marker does."
        ),
    ] = 300.0,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the inbox.")] = 5.0,
    attempts: Annotated[int, typer.Option(help="Tries of a failing plate before it is given up.")] = 3,
    retry_delay: Annotated[float, typer.Option(help="Seconds between tries of a failed plate.")] = 60.0,
    **shared,
):
    """Classify each plate in INBOX once the imager has finished writing it; SIGTERM stops after the current field.

    Options given here win over those in INBOX/mcnn-watch.toml (same names, e.g. layout = "harmony").
    """
    given = {name: value for name, value in shared.items() if value is not None and value is not False}

    def log(line: str):
        console.print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {escape(line)}")

    try:
        precision, options = plate_options(inbox, given)
        options["layout"] = check_plate_options(options.get("layout", "auto"), options.get("fit"))
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError, ValueError) as exc:
        raise fail(exc) from None
    options = WatchOptions(
        marker=marker, quiet=quiet, poll=poll, attempts=attempts, retry_delay=retry_delay, classify=options
    )
    with stop_on_signals(log=log) as stop:
        try:
            watcher = Watcher(inbox, out, classifier, options, stop=stop, log=log)
        except WatchError as exc:
            raise fail(exc) from None
        with watcher:
            watcher.run()


def check_plate_options(layout: str, fit: str | None) -> str:
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"{layout!r}: choose one of {', '.join(LAYOUTS)}", param_hint="--layout")
    if fit not in (None, "pad", "resize"):
        raise typer.BadParameter(f"{fit!r}: choose pad or resize", param_hint="--fit")
    return layout


def run_with_progress(function, *args, **kwargs):
    """Call function(..., progress=callback) under a rich progress bar with fields/s and ETA."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(str(args[0]), total=None, rate="")

        def progress(done: int, total: int, rate: float = 0.0):
            bar.update(task, completed=done, total=total, rate=f"{rate:.2f} fields/s" if rate else "")

        return function(*args, progress=progress, **kwargs)


for commands in installed_commands():
    app.add_typer(commands)

"""The `mcnn-appliance` command: the runtime's commands (synth, classify, merge, watch), then the
commands the training and export packages register (train, evaluate, export, benchmark, demo).

Commands are thin: they parse options and call one function. The runtime never imports training/
or export/; their commands arrive through the `mcnn_appliance.commands` entry points, so a
runtime-only install still lists them and names the extra each needs (appliance/console.py).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import appliance
from appliance.classify import classify_plate, default_out, parse_shard
from appliance.command_help import Command, commands_app, example
from appliance.console import (
    EXIT_NOTHING_RAN,
    EXIT_OK,
    EXIT_SOME_FAILED,
    console,
    error,
    fail,
    installed_commands,
    parse_size,
    say,
    warn,
)
from appliance.inference import Classifier
from appliance.merge import MergeError, merge_results
from appliance.model_card import ModelCardError
from appliance.plate import PlateError, plate_folders, plate_name
from appliance.plate_options import JsonOption, QuietOption, check_plate_options, with_plate_options
from appliance.results import ResultsError
from appliance.screen_report import SCREEN_HTML, write_screen_report
from appliance.synth import write_dataset
from appliance.synth.dataset import clear_folder
from appliance.watch import Watcher, WatchError, WatchOptions, plate_options, stop_on_signals

app = commands_app(
    no_args_is_help=True,
    help="Classify microscopy screening plates with the multiscale CNN (M-CNN) on CPU servers.",
    epilog=example(
        "mcnn-appliance classify plates/P1 --model runs/first/export",
        "mcnn-appliance COMMAND -h        (each command's options and an example)",
    ),
)


def version_callback(value: bool):
    if value:
        print(f"mcnn-appliance {appliance.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
):
    pass


SizeOption = Annotated[str, typer.Option(metavar="HxW", help="Field size, height x width (BBBC021: 1024x1280).")]


@app.command(cls=Command, epilog=example("mcnn-appliance synth data/ --plates 3 --size 256x384"))
def synth(
    out: Annotated[Path, typer.Argument(metavar="FOLDER", help="Folder to write the plates and CSVs into.")],
    plates: Annotated[int, typer.Option(help="Number of plates (each in its own week).")] = 3,
    fields_per_class: Annotated[int, typer.Option(help="Fields per class on each plate.")] = 8,
    size: SizeOption = "1024x1280",
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes rendering in parallel.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the plates and CSVs of a folder that is not empty.")
    ] = False,
):
    """Write synthetic BBBC021-like plates: 16-bit TIFFs under the real names, plus the two CSVs."""
    try:
        clear_folder(out, overwrite)
    except FileExistsError as exc:
        raise fail(exc) from None
    summary = write_dataset(
        out, plates=plates, fields_per_class=fields_per_class, size=parse_size(size), seed=seed, workers=workers
    )
    say(f"wrote {summary['fields']} fields on {len(summary['plates'])} plates to {out} in {summary['seconds']:.0f} s")


@app.command(
    cls=Command,
    epilog=example(
        "mcnn-appliance classify data/Week1/Week1_22123 --model runs/first/export",
        "  (writes results/Week1_22123/ under the working directory)",
    ),
)
@with_plate_options
def classify(
    plates: Annotated[
        list[Path],
        typer.Argument(
            metavar="PLATE...",
            help="Plate folder(s), folder(s) of plate folders, or CSV(s) listing a plate (manifest, LoadData); "
            "see README, Plate layouts. Results folders among them are skipped.",
        ),
    ],
    model: Annotated[
        Path, typer.Option(metavar="EXPORT", help="Export folder holding model.xml (or the .xml itself).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FOLDER",
            help="Results folder (default: results/PLATE under the working directory; with several plates, "
            "one sub-folder per plate).",
        ),
    ] = None,
    shard: Annotated[
        str,
        typer.Option(
            metavar="I/N|auto",
            help="Classify only shard I (0..N-1) of N, split by well and site; join the shards with `merge`. "
            "auto: this task's shard of a Slurm job array (sbatch --array=0-N).",
        ),
    ] = "0/1",
    force: Annotated[bool, typer.Option("--force", help="Redo every field, even those already done in --out.")] = False,
    chunk_fields: Annotated[int, typer.Option(help="Fields per committed chunk (redone at most after a crash).")] = 64,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    **shared,
):
    """Classify every field of one or more plates with OpenVINO; rerun the same command to resume."""
    precision = shared.pop("precision") or "auto"
    passed_on = {"force": force, "chunk_fields": chunk_fields, **shared}
    passed_on["layout"] = check_plate_options(shared["layout"] or "auto", shared["fit"])
    try:
        plates = plate_folders(plates, note=warn)
    except PlateError as exc:
        raise fail(exc) from None
    if not plates:
        raise fail("no plate to classify (every folder given was a results folder)")
    try:
        the_shard = parse_shard(shard)
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError, ValueError) as exc:
        raise fail(exc) from None
    if not quiet:
        say(f"precision {classifier.choice.precision}: {classifier.choice.reason}")
    if classifier.warning:
        warn(f"warning: {classifier.warning}")
    summaries, code = [], EXIT_OK
    with stop_on_signal() as stop:
        for plate in plates:
            if out is None:
                plate_out = default_out(plate)  # results/<plate>: printed below
            else:
                plate_out = out if len(plates) == 1 else out / plate_name(plate)
            options = {**passed_on, "shard": the_shard, "stop": stop}
            stop.classifying = False  # each plate's fields are found before they are classified
            try:
                if quiet:
                    summary = classify_plate(plate, classifier, plate_out, progress=stop.started, **options)
                else:
                    summary = run_with_progress(
                        classify_plate, plate, classifier, plate_out, also=stop.started, **options
                    )
            except KeyboardInterrupt as exc:  # a signal before this plate's classification, or a second one
                signal_name = exc.args[0] if exc.args else "interrupted"
                if stop.classifying:
                    error(f"{plate}: {signal_name} again: aborted; rerun the same command to finish")
                else:
                    error(f"{plate}: {signal_name} before classification started: stopped, nothing of it classified")
                code = EXIT_SOME_FAILED if summaries or stop.classifying else EXIT_NOTHING_RAN
                break
            except (OSError, ValueError, RuntimeError) as exc:  # PlateError, ModelCardError: ValueError; ResultsError
                error(exc)
                code = max(code, EXIT_NOTHING_RAN if len(plates) == 1 else EXIT_SOME_FAILED)
                continue
            summaries.append(summary)
            for damaged in summary.get("set_aside", []):
                warn(damaged)
            counts = summary["counts"]
            if summary.get("nothing_to_do") and not quiet:
                say(
                    f"{summary['plate']}: nothing to do, its {counts['classified']} fields were classified "
                    f"on {summary['finished']}; results as they were -> {summary['out']}"
                )
            elif not quiet:
                say(
                    f"{summary['plate']}: {counts['classified']} fields classified "
                    f"({counts['skipped_done']} done earlier), {counts['failed']} failed "
                    f"({summary['fields_per_s']:.2f} fields/s, {summary['precision']}) -> {summary['out']}"
                )
            if counts["failed"]:
                if not quiet:
                    warn(f"{counts['failed']} field(s) failed; see {Path(summary['out']) / 'failures.csv'}")
                code = max(code, EXIT_SOME_FAILED)
            if summary["interrupted"]:
                warn(f"{summary['plate']}: stopped; rerun the same command to finish")
                code = max(code, EXIT_SOME_FAILED)
                break
    if as_json:
        print(json.dumps(summaries[0] if len(plates) == 1 and summaries else summaries, indent=2, default=str))
    raise typer.Exit(code)


@app.command(cls=Command, epilog=example("mcnn-appliance merge results-0 results-1 results-2 --out results/P1"))
def merge(
    out_dirs: Annotated[
        list[Path], typer.Argument(metavar="SHARD_FOLDER...", help="Results folders of `classify --shard I/N`.")
    ],
    out: Annotated[Path, typer.Option(metavar="FOLDER", help="Merged results folder.")],
    as_json: JsonOption = False,
):
    """Merge the shards of one plate into one results folder (refuses overlaps and mixed models)."""
    try:
        summary = merge_results(out_dirs, out)
    except (MergeError, ResultsError, OSError) as exc:
        raise fail(exc) from None
    counts, code = summary["counts"], EXIT_OK
    say(
        f"{summary['plate']}: {counts['classified']} fields, {counts['failed']} failed, from "
        f"{len(summary['merged_from'])} folders -> {summary['out']}"
    )
    for problem, folders in (
        ("missing shards", summary["missing_shards"]),
        ("interrupted shards (rerun them)", summary["incomplete_shards"]),
    ):
        if folders:
            warn(f"{problem}: {', '.join(folders)}")
            code = EXIT_SOME_FAILED
    if counts["failed"]:
        code = EXIT_SOME_FAILED
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    raise typer.Exit(code)


@app.command(cls=Command, epilog=example("mcnn-appliance report results/ --out screen.html"))
def report(
    results: Annotated[
        list[Path], typer.Argument(metavar="RESULTS...", help="Results folders (or folders of them), one per plate.")
    ],
    out: Annotated[Path, typer.Option(metavar="FILE", help="The screen's HTML report.")] = Path(SCREEN_HTML),
    moa: Annotated[
        Path | None,
        typer.Option(
            metavar="CSV", help="MoA table (compound, concentration, moa) for the treatments' confusion matrix."
        ),
    ] = None,
):
    """Write one HTML report over many plates' results: counts, classes, treatments across replicate plates."""
    try:
        screen = write_screen_report(results, out, moa)
    except (ResultsError, OSError, ValueError) as exc:
        raise fail(exc) from None
    say(f"{len(screen.plates)} plates -> {out}")
    for folder, reason in screen.unreadable:
        error(f"{folder}: not reported: {reason}")
    raise typer.Exit(EXIT_SOME_FAILED if screen.unreadable else EXIT_OK)


class Stop(threading.Event):
    """Set by the first Ctrl-C or SIGTERM once fields are being classified, so that classify commits the
    fields in flight and stops. Before that (finding the plate's fields, reading a plate map) there is
    nothing to save, and a signal ends the command at once: a stuck read must not outlive a `timeout`."""

    classifying = False

    def started(self, *progress) -> None:
        """classify_plate's progress callback: fields are being classified."""
        self.classifying = True


@contextlib.contextmanager
def stop_on_signal():
    """A Stop: the first signal asks classification to stop; a signal before it, or a second one, aborts."""
    stop = Stop()

    def handler(signum, frame):
        if stop.is_set() or not stop.classifying:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        warn("stopping after the fields in flight (again to abort)")
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


@app.command(
    cls=Command, epilog=example("mcnn-appliance watch /mnt/imager/outbox --model runs/first/export --out results/")
)
@with_plate_options
def watch(
    inbox: Annotated[Path, typer.Argument(metavar="INBOX", help="Folder the imager writes plate folders into.")],
    model: Annotated[Path, typer.Option(metavar="EXPORT", help="Export folder holding model.xml.")],
    out: Annotated[
        Path,
        typer.Option(
            metavar="FOLDER",
            help="Results folder, outside the inbox: one sub-folder per plate and watch-ledger.json "
            "(default: results under the working directory).",
        ),
    ] = Path("results"),
    marker: Annotated[
        str, typer.Option(metavar="NAME", help="A file of this name in a plate folder marks it complete.")
    ] = "COMPLETE",
    settle: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds without any file changing that also mark a plate complete; 0: only the marker does.",
        ),
    ] = 300.0,
    poll: Annotated[float, typer.Option(metavar="SECONDS", help="Seconds between looks at the inbox.")] = 5.0,
    attempts: Annotated[int, typer.Option(help="Tries of a failing plate before it is given up.")] = 3,
    retry_delay: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds between tries of a failed plate.")
    ] = 60.0,
    quiet: QuietOption = False,
    **shared,
):
    """Classify each plate in INBOX once the imager has finished writing it; SIGTERM stops after the current field.

    Options given here win over those in INBOX/mcnn-watch.toml (same names, e.g. layout = "harmony").
    """
    given = {name: value for name, value in shared.items() if value is not None and value is not False}

    def stamped(line: str):
        say(f"{datetime.now():%Y-%m-%d %H:%M:%S} {line}")

    log = (lambda line: None) if quiet else stamped  # progress; problems are always printed (stamped)

    try:
        precision, options = plate_options(inbox, given)
        options["layout"] = check_plate_options(options.get("layout", "auto"), options.get("fit"))
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError, ValueError) as exc:
        raise fail(exc) from None
    log(f"precision {classifier.choice.precision}: {classifier.choice.reason}")
    if classifier.warning:
        stamped(f"warning: {classifier.warning}")
    options = WatchOptions(
        marker=marker, settle=settle, poll=poll, attempts=attempts, retry_delay=retry_delay, classify=options
    )
    log(f"results go to {out.resolve()}")
    with stop_on_signals(log=stamped) as stop:
        try:
            watcher = Watcher(inbox, out, classifier, options, stop=stop, log=log, warn=stamped)
        except WatchError as exc:
            raise fail(exc) from None
        with watcher:
            watcher.run()


def run_with_progress(function, *args, also=None, **kwargs):
    """Call function(..., progress=callback) under a rich progress bar with fields/s and ETA; also(done,
    total, rate) is called too when given."""
    with Progress(
        TextColumn("{task.description}", markup=False),  # a path, shown as it is
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(str(args[0]), total=None, rate="")

        def progress(done: int, total: int, rate: float = 0.0):
            bar.update(task, completed=done, total=total, rate=f"{rate:.2f} fields/s" if rate else "")
            if also:
                also(done, total, rate)

        return function(*args, progress=progress, **kwargs)


for commands in installed_commands():
    app.add_typer(commands)

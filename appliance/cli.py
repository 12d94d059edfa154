"""The `mcnn-appliance` command. Commands are thin: they parse options and call one function.

Training and export need torch; they are imported only when those commands run, so the
runtime image (no torch) classifies, and a missing extra is a one-line message, not a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

import appliance

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Classify microscopy screening plates with the multiscale CNN (M-CNN) on CPU servers.")
console = Console(stderr=True)

# Exit codes of classify: every field classified / some fields failed / nothing could run.
EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_RAN = 0, 1, 2
OPTIONAL = {"torch": "train", "safetensors": "train", "onnx": "export", "onnxruntime": "export",
            "onnxscript": "export", "nncf": "export"}


def lazy_import(module: str, command: str):
    """Import a torch-side module, or exit saying which extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL:
            raise
        extra = OPTIONAL[top]
        console.print(f"[red]error:[/] `mcnn-appliance {command}` needs {top}: "
                      + escape(f"pip install 'mcnn-appliance[{extra}]'"))
        raise typer.Exit(EXIT_NOTHING_RAN) from None


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected HEIGHTxWIDTH, e.g. 1024x1280") from None
    return height, width


def version_callback(value: bool):
    if value:
        print(f"mcnn-appliance {appliance.__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback,
                                                         is_eager=True, help="Print the version.")] = None):
    pass


SizeOption = Annotated[str, typer.Option(help="Field size HEIGHTxWIDTH (BBBC021: 1024x1280).")]


@app.command()
def synth(out: Annotated[Path, typer.Argument(help="Folder to write the plates and CSVs into.")],
          plates: Annotated[int, typer.Option(help="Number of plates (each in its own week).")] = 3,
          fields_per_class: Annotated[int, typer.Option(help="Fields per class on each plate.")] = 8,
          size: SizeOption = "1024x1280",
          seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
          workers: Annotated[int, typer.Option(help="Processes rendering in parallel.")] = 1):
    """Write synthetic BBBC021-like plates: 16-bit TIFFs under the real names, plus the two CSVs."""
    from appliance.synth import write_dataset

    summary = write_dataset(out, plates=plates, fields_per_class=fields_per_class, size=parse_size(size),
                            seed=seed, workers=workers)
    console.print(f"wrote {summary['fields']} fields on {len(summary['plates'])} plates to {out} "
                  f"in {summary['seconds']:.0f} s")


@app.command()
def train(data: Annotated[Path, typer.Argument(help="Folder with BBBC021_v1_image.csv, BBBC021_v1_moa.csv "
                                                     "and the Week folders.")],
          out: Annotated[Path, typer.Option(help="Run folder to write.")],
          epochs: int = 4,
          batch_size: Annotated[int, typer.Option(help="Micro-batch: fields per forward pass on each rank (the "
                                                       "plan lowers it, and accumulates, if memory is short).")] = 4,
          accumulation: Annotated[int, typer.Option(help="Micro-batches per optimizer step; global batch = "
                                                         "batch size x accumulation x ranks.")] = 1,
          size: SizeOption = "1024x1280",
          seed: int = 0,
          recipe: Annotated[Optional[str], typer.Option(help="Optimizer and schedule: adamw (the default; AdamW "
                                                             "3e-4, tuned for the demo) or paper (Nesterov SGD, 0.01 "
                                                             "per 256 fields scaled linearly, 2 warmup epochs). The "
                                                             "options below override it.")] = None,
          optimizer: Annotated[Optional[str], typer.Option(help="adamw or sgd (Nesterov).")] = None,
          lr: Annotated[Optional[float], typer.Option(help="Peak learning rate at --lr-reference-batch.")] = None,
          lr_scaling: Annotated[Optional[str], typer.Option(help="none, or linear: peak rate = lr x global batch / "
                                                                 "--lr-reference-batch.")] = None,
          lr_reference_batch: Annotated[Optional[int], typer.Option(help="The global batch --lr is given for.")]
          = None,
          weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (weights, not biases).")] = None,
          warmup_epochs: Annotated[Optional[float], typer.Option(help="Linear warmup (epochs, fractions allowed), "
                                                                      "then cosine decay.")] = None,
          clip_grad: Annotated[float, typer.Option(help="Clip the gradient norm to this; 0 = off.")] = 0.0,
          precision: Annotated[str, typer.Option(help="auto, bf16 or fp32.")] = "auto",
          workers: Annotated[int, typer.Option(help="Data-loading processes.")] = 1,
          target_acc: Annotated[float, typer.Option(help="Validation accuracy whose first epoch and wall time "
                                                         "the run records (time to accuracy).")] = 0.99,
          gain_jitter: Annotated[float, typer.Option(help="Augmentation: each stain's gain x exp(U(-j, j)); "
                                                          "0 turns it off.")] = 0.15,
          global_batch: Annotated[Optional[int], typer.Option(help="Fields per optimizer step over all ranks "
                                                                   "(default: batch size x accumulation x ranks); "
                                                                   "the plan picks micro-batch and accumulation.")]
          = None,
          memory_gb: Annotated[Optional[float], typer.Option(help="Memory for training on each node (default: "
                                                                  "available RAM minus 10 %, at least 1 GB).")] = None,
          nproc_per_node: Annotated[int, typer.Option(help="Training processes (ranks) on this node; "
                                                            "more than one launches torchrun.")] = 1,
          nnodes: Annotated[int, typer.Option(help="Nodes; run the same command on every node.")] = 1,
          rdzv_endpoint: Annotated[Optional[str], typer.Option(help="HOST:PORT every node can reach "
                                                                    "(with --nnodes > 1).")] = None,
          split: Annotated[str, typer.Option(help="stratified (a random fifth of every class held out), nsc "
                                                  "(not-same-compound) or nscb (not-same-compound-or-batch).")]
          = "stratified",
          fold: Annotated[Optional[str], typer.Option(help="nsc/nscb: the compound held out, as an index into "
                                                           "the compounds sorted by name (DMSO excluded), or "
                                                           "all: one run per fold in OUT/fold-K.")] = None,

          checkpoint_every: Annotated[int, typer.Option(help="Optimizer steps between checkpoints in "
                                                             "OUT/checkpoints (0: only at epoch ends).",
                                                        min=0)] = 100,
          keep_checkpoints: Annotated[int, typer.Option(help="Newest checkpoints kept.", min=1)] = 2,
          resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest "
                                                                "checkpoint (same options).")] = False,
          max_restarts: Annotated[int, typer.Option(help="With torchrun: restart the ranks this many times after "
                                                         "a failure; they resume from the last checkpoint.",
                                                    min=0)] = 0):
    """Train the M-CNN on labelled fields; writes weights, config, metrics, split and plan to --out."""
    import os

    train_module = lazy_import("training.train", "train")
    from training.plan import available_memory_gb, field_gb, model_parameters, plan, usable_cores

    launched = "WORLD_SIZE" in os.environ  # already one rank of a torchrun launch: plan as torchrun set it up
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched else nproc_per_node
    nodes = int(os.environ["WORLD_SIZE"]) // ranks if launched else nnodes
    field_size = parse_size(size)
    try:
        the_plan = plan(usable_cores(), memory_gb or available_memory_gb(),
                        global_batch or batch_size * accumulation * ranks * nodes,
                        field_gb(field_size, train_module.resolve_precision(precision)), ranks, nodes=nodes,
                        max_micro_batch=batch_size, parameters=model_parameters(field_size))
    except ValueError as exc:  # PlanError, a bad precision
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    try:
        runs, skipped_folds = planned_runs(data, out, split, fold)
    except ValueError as exc:  # SplitError, MetadataError
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    if launched and len(runs) > 1:
        console.print("[red]error:[/] --fold all under a torchrun launch you started: launch one fold per command")
        raise typer.Exit(EXIT_NOTHING_RAN)
    if max_restarts and (launched or ranks * nodes == 1):
        raise typer.BadParameter("--max-restarts is torchrun's: it needs --nproc-per-node or --nnodes above 1 "
                                 "(under a torchrun you launch, give torchrun --max-restarts)")
    if os.environ.get("RANK", "0") == "0":
        console.print(the_plan.describe())
        for skipped in skipped_folds:
            console.print(f"[yellow]fold {skipped.index} skipped:[/] {escape(skipped.problem)}")
    code = EXIT_OK
    for held_out, run_out in runs:
        fold_index = held_out.index if held_out else None
        if held_out and os.environ.get("RANK", "0") == "0":
            console.print(f"{split} fold {held_out.index}: {held_out.compound} held out"
                          + (f"; weeks {', '.join(held_out.excluded_weeks)} left out of training"
                             if held_out.excluded_weeks else ""))
        cfg = train_module.TrainConfig(data=str(data.resolve()), out=str(run_out), epochs=epochs,
                                       batch_size=the_plan.micro_batch, accumulation=the_plan.accumulation,
                                       size=field_size, seed=seed, recipe=recipe or train_module.DEFAULT_RECIPE,
                                       optimizer=optimizer, lr=lr, lr_scaling=lr_scaling,
                                       lr_reference_batch=lr_reference_batch, weight_decay=weight_decay,
                                       warmup_epochs=warmup_epochs, clip_grad=clip_grad, precision=precision,
                                       workers=workers, gain_jitter=gain_jitter, target_acc=target_acc,
                                       split=split, fold=fold_index, checkpoint_every=checkpoint_every,
                                       keep_checkpoints=keep_checkpoints, resume=resume)
        try:
            cfg = train_module.resolve_recipe(cfg)  # a bad recipe name stops here, before torchrun starts ranks
        except ValueError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_NOTHING_RAN) from None
        try:
            returncode = train_module.launch(cfg, the_plan, in_process=launched or ranks * nodes == 1,
                                             console=console, rdzv_endpoint=rdzv_endpoint, max_restarts=max_restarts)
        except ValueError as exc:  # ResumeError (nothing trained), a bad rendezvous, a bad config
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            returncode = EXIT_NOTHING_RAN
        except (FloatingPointError, OSError) as exc:  # a non-finite loss stopped the run (its checkpoints stay)
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            returncode = EXIT_SOME_FAILED
        if returncode and len(runs) > 1:  # one fold failing does not stop the others
            console.print(f"[red]training {run_out} failed[/] (exit code {returncode})")
            returncode = EXIT_SOME_FAILED
        code = max(code, returncode)
    raise typer.Exit(code)


def planned_runs(data: Path, out: Path, split: str, fold: str | None) -> tuple[list[tuple], list]:
    """([(Fold or None, run folder)] to train, [Fold skipped]); with --fold all, OUT/fold-K per fold."""
    from appliance.metadata import load_fields
    from training.data import chosen_folds

    chosen, skipped = chosen_folds(lambda: load_fields(data), split, fold)
    if fold == "all":
        return [(f, out / f"fold-{f.index}") for f in chosen], skipped
    return [(f, out) for f in chosen], skipped


@app.command()
def export(run: Annotated[Path, typer.Argument(help="Run folder written by `train`.")],
           out: Annotated[Optional[Path], typer.Option(help="Export folder (default RUN/export).")] = None,
           int8: Annotated[bool, typer.Option("--int8", help="Also write model-int8.xml (NNCF post-training "
                                                              "quantization), kept only if accuracy holds.")] = False,
           calibration: Annotated[Optional[Path], typer.Option(
               help="BBBC021-layout folder to calibrate on (default: the run's training fields).")] = None,
           calibration_fields: Annotated[int, typer.Option(help="Calibration fields, stratified by class.")] = 128,
           gate_fields: Annotated[int, typer.Option(help="Held-out fields the accuracy gate compares on.")] = 130,
           max_drop: Annotated[float, typer.Option(help="Largest INT8 top-1 accuracy drop kept, in points.")] = 1.0,
           force: Annotated[bool, typer.Option("--force", help="Keep the INT8 model even if it fails the gate.")]
           = False):
    """Export a run to ONNX and OpenVINO IR, checked against torch on real fields; --int8 adds an INT8 IR."""
    exporter = lazy_import("export.exporter", "export")
    from appliance.metadata import MetadataError

    try:
        summary = exporter.export_run(run, out, int8=int8, calibration=calibration,
                                      calibration_fields=calibration_fields, gate_fields=gate_fields,
                                      max_drop=max_drop, force=force, log=console.print)
    except (exporter.ExportError, MetadataError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    console.print(f"exported to {Path(summary['xml']).parent} in {summary['seconds']:.0f} s")
    if int8 and not summary["int8_xml"]:
        gate = summary["parity"]["quantization"]["gate"]
        console.print(f"[red]INT8 rejected:[/] top-1 drop {gate['drop_points']:.1f} points > --max-drop "
                      f"{max_drop:g}; only the float model was kept (--force keeps INT8 anyway)")
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def evaluate(run: Annotated[Path, typer.Argument(help="Run folder written by `train` (or by `train --fold all`: "
                                                     "the folds pooled), or an export folder holding model.xml.")],
             data: Annotated[Optional[Path], typer.Option(help="BBBC021-layout folder with the fields' metadata "
                                                               "(default: the data the run was trained on).")] = None,
             split: Annotated[str, typer.Option(help="The split.csv fields to score: val, train or all.")] = "val",
             batch_size: int = 4):
    """Score a run on its held-out fields: field and treatment accuracy, per class, confusion matrices."""
    evaluation = lazy_import("training.evaluate", "evaluate")
    from appliance.metadata import MetadataError

    try:
        summary = evaluation.evaluate_run(run, data, split, batch_size)
    except (evaluation.EvaluationError, MetadataError, FileNotFoundError, RuntimeError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    Console().print(evaluation.table(summary))  # the table on stdout, notes on stderr
    console.print(f"evaluation written to {summary['out']}")
    if summary["failed"]:
        console.print(f"[yellow]{len(summary['failed'])} field(s) could not be read[/] and were not scored; "
                      f"see {summary['out']}/evaluation.json")
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def classify(plates: Annotated[list[Path], typer.Argument(
                 help="Plate folder(s), folder(s) of plate folders, or manifest CSV(s); see README, Plate layouts.")],
             model: Annotated[Path, typer.Option(help="Export folder holding model.xml (or the .xml itself).")],
             out: Annotated[Optional[Path], typer.Option(
                 help="Results folder (default: <plate>-results beside each plate; with several plates, "
                      "one sub-folder per plate).")] = None,
             precision: Annotated[str, typer.Option(
                 help="f32, bf16 (where the CPU has it) or int8 (model-int8.xml).")] = "f32",
             layout: Annotated[str, typer.Option(help="auto, bbbc021, metaxpress, ome-tiff or manifest.")] = "auto",
             channels: Annotated[Optional[str], typer.Option(
                 help="Plate channel of each model channel, e.g. DAPI=w1,Tubulin=w2,Actin=w4.")] = None,
             platemap: Annotated[Optional[Path], typer.Option(
                 help="CSV with columns well, compound, concentration (optional plate).")] = None,
             fit: Annotated[Optional[str], typer.Option(
                 help="Fields of another size: pad (zeros, centred) or resize (keeps aspect, then pads); "
                      "recorded per field in Metadata_Fit.")] = None,
             shard: Annotated[str, typer.Option(help="I/N: classify only shard I (0..N-1) of N, split by well and "
                                                     "site; join the shards with `merge`.")] = "0/1",
             force: Annotated[bool, typer.Option("--force", help="Redo every field, even those already done "
                                                                 "in --out.")] = False,
             embeddings: Annotated[bool, typer.Option("--embeddings", help="Also write embeddings.parquet "
                                                                           "(512 features per field).")] = False,
             chunk_fields: Annotated[int, typer.Option(help="Fields per committed chunk (redone at most after "
                                                            "a crash).")] = 64,
             quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or summary lines.")] = False,
             as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False):
    """Classify every field of one or more plates with OpenVINO; rerun the same command to resume."""
    from appliance.classify import classify_plate, parse_shard
    from appliance.inference import Classifier
    from appliance.model_card import ModelCardError
    from appliance.plate import LAYOUTS, PlateError, plate_folders, plate_name

    if layout not in LAYOUTS:
        raise typer.BadParameter(f"{layout!r}: choose one of {', '.join(LAYOUTS)}", param_hint="--layout")
    if fit not in (None, "pad", "resize"):
        raise typer.BadParameter(f"{fit!r}: choose pad or resize", param_hint="--fit")
    try:
        plates = plate_folders(plates)
    except PlateError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    try:
        the_shard = parse_shard(shard)
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    summaries, code = [], EXIT_OK
    with stop_on_signal() as stop:
        for plate in plates:
            plate_out = out if out is None or len(plates) == 1 else out / plate_name(plate)
            options = dict(layout=layout, channels=channels, platemap=platemap, fit=fit, shard=the_shard,
                           force=force, embeddings=embeddings, stop=stop, chunk_fields=chunk_fields)
            try:
                if quiet:
                    summary = classify_plate(plate, classifier, plate_out, **options)
                else:
                    summary = run_with_progress(classify_plate, plate, classifier, plate_out, **options)
            except (OSError, ValueError, RuntimeError) as exc:  # PlateError, ModelCardError: ValueError; ResultsError
                console.print(f"[red]error:[/] {escape(str(exc))}")
                code = max(code, EXIT_NOTHING_RAN if len(plates) == 1 else EXIT_SOME_FAILED)
                continue
            summaries.append(summary)
            counts = summary["counts"]
            if not quiet:
                console.print(f"{summary['plate']}: {counts['classified']} fields classified "
                              f"({counts['skipped_done']} done earlier), {counts['failed']} failed "
                              f"({summary['fields_per_s']:.2f} fields/s, {summary['precision']}) -> {summary['out']}")
            if counts["failed"]:
                if not quiet:
                    console.print(f"[yellow]{counts['failed']} field(s) failed; see "
                                  f"{Path(summary['out']) / 'failures.csv'}")
                code = max(code, EXIT_SOME_FAILED)
            if summary["interrupted"]:
                console.print(f"[yellow]{summary['plate']}: stopped; rerun the same command to finish")
                code = max(code, EXIT_SOME_FAILED)
                break
    if as_json:
        print(json.dumps(summaries[0] if len(plates) == 1 and summaries else summaries, indent=2, default=str))
    raise typer.Exit(code)


@app.command()
def merge(out_dirs: Annotated[list[Path], typer.Argument(help="Results folders of `classify --shard I/N`.")],
          out: Annotated[Path, typer.Option(help="Merged results folder.")],
          as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False):
    """Merge the shards of one plate into one results folder (refuses overlaps and mixed models)."""
    from appliance.merge import MergeError, merge_results
    from appliance.results import ResultsError

    try:
        summary = merge_results(out_dirs, out)
    except (MergeError, ResultsError, OSError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    counts, code = summary["counts"], EXIT_OK
    console.print(f"{summary['plate']}: {counts['classified']} fields, {counts['failed']} failed, from "
                  f"{len(summary['merged_from'])} folders -> {summary['out']}")
    for problem, folders in (("missing shards", summary["missing_shards"]),
                             ("interrupted shards (rerun them)", summary["incomplete_shards"])):
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
def benchmark(model_dir: Annotated[Path, typer.Argument(help="Export folder holding model.xml "
                                                              "(and model.onnx, model-int8.xml if present).")],
              fields: Annotated[int, typer.Option(help="Fields per timing round (5 rounds per backend).")] = 4,
              data: Annotated[Optional[Path], typer.Option(help="Labelled BBBC021-layout folder for accuracy "
                                                                "(default: the run's validation fields).")] = None,
              app_seconds: Annotated[int, typer.Option(help="Seconds per benchmark_app run (0: skip it).")] = 10,
              run: Annotated[Optional[Path], typer.Option(help="Run folder, for the torch baseline and val rows "
                                                               "(default: MODEL_DIR's parent).")] = None,
              as_json: Annotated[Optional[Path], typer.Option("--json", help="Write the rows as JSON here.")] = None):
    """Throughput, latency and accuracy of torch, ONNX Runtime and OpenVINO f32/bf16/int8, side by side."""
    from appliance.benchmark import benchmark as run_benchmark
    from appliance.benchmark import table

    if fields < 1:
        raise typer.BadParameter("--fields must be at least 1")
    try:
        rows = run_benchmark(model_dir, fields=fields, data=data, app_seconds=app_seconds, run_dir=run,
                             log=console.print)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:  # ValueError: model card, metadata, field errors
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    Console().print(table(rows))  # the table on stdout, progress notes on stderr
    if as_json:
        as_json.write_text(json.dumps(rows, indent=2))


@app.command()
def watch(inbox: Annotated[Path, typer.Argument(help="Folder the imager writes plate folders into.")],
          model: Annotated[Path, typer.Option(help="Export folder holding model.xml.")],
          out: Annotated[Path, typer.Option(help="Results folder: one sub-folder per plate and watch-ledger.json.")],
          marker: Annotated[str, typer.Option(help="A file of this name in a plate folder marks it complete.")]
          = "COMPLETE",
          quiet: Annotated[float, typer.Option(help="Seconds without any file changing that also mark a plate "
                                                    "complete; 0: only the marker does.")] = 300.0,
          poll: Annotated[float, typer.Option(help="Seconds between looks at the inbox.")] = 5.0,
          attempts: Annotated[int, typer.Option(help="Tries of a failing plate before it is given up.")] = 3,
          retry_delay: Annotated[float, typer.Option(help="Seconds between tries of a failed plate.")] = 60.0,
          precision: Annotated[str, typer.Option(
              help="f32, bf16 (where the CPU has it) or int8 (model-int8.xml).")] = "f32"):
    """Classify each plate in INBOX once the imager has finished writing it; SIGTERM stops after the current field."""
    from datetime import datetime

    from appliance.inference import Classifier
    from appliance.model_card import ModelCardError
    from appliance.watch import WatchError, WatchOptions, stop_on_signals
    from appliance.watch import watch as watch_inbox

    def log(line: str):
        console.print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {escape(line)}", soft_wrap=True)

    try:
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    options = WatchOptions(marker=marker, quiet=quiet, poll=poll, attempts=attempts, retry_delay=retry_delay)
    with stop_on_signals(log=log) as stop:
        try:
            watch_inbox(inbox, out, classifier, options, stop=stop, log=log)
        except WatchError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_NOTHING_RAN) from None


def run_with_progress(function, *args, **kwargs):
    """Call function(..., progress=callback) under a rich progress bar with fields/s and ETA."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(str(args[0]), total=None, rate="")

        def progress(done: int, total: int, rate: float = 0.0):
            bar.update(task, completed=done, total=total, rate=f"{rate:.2f} fields/s" if rate else "")

        return function(*args, progress=progress, **kwargs)


@app.command()
def demo(workdir: Annotated[Path, typer.Option(help="Where the synthetic plates, run and results go.")]
         = Path("demo")):
    """Synthetic plates -> train (full resolution) -> export -> classify a held-out plate."""
    demo_module = lazy_import("appliance.demo", "demo")
    summary = demo_module.run_demo(workdir, console=console)
    raise typer.Exit(EXIT_SOME_FAILED if summary["failed"] else EXIT_OK)

"""The `mcnn-appliance` command. Commands are thin: they parse options and call one function.

Training and export need torch; they are imported only when those commands run, so the
runtime image (no torch) classifies, and a missing extra is a one-line message, not a traceback.
"""

from __future__ import annotations

import importlib
import json
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
          lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.")] = None,
          lr_scaling: Annotated[str, typer.Option(help="none, or linear: peak rate = lr x global batch / 2 "
                                                       "(the batch the default lr was tuned at).")] = "none",
          optimizer: Annotated[str, typer.Option(help="adamw or sgd (Nesterov).")] = "adamw",
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
    import subprocess

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
    if os.environ.get("RANK", "0") == "0":
        console.print(the_plan.describe())
    cfg = train_module.TrainConfig(data=str(data), out=str(out), epochs=epochs, batch_size=the_plan.micro_batch,
                                   accumulation=the_plan.accumulation, size=field_size, seed=seed,
                                   optimizer=optimizer, lr_scaling=lr_scaling, precision=precision, workers=workers,
                                   gain_jitter=gain_jitter, target_acc=target_acc, checkpoint_every=checkpoint_every,
                                   keep_checkpoints=keep_checkpoints, resume=resume)
    if lr is not None:
        cfg.lr = lr
    if max_restarts and (launched or ranks * nodes == 1):
        raise typer.BadParameter("--max-restarts is torchrun's: it needs --nproc-per-node or --nnodes above 1 "
                                 "(under a torchrun you launch, give torchrun --max-restarts)")
    if launched or ranks * nodes == 1:  # one process, or one rank under torchrun
        from training.checkpoint import ResumeError

        try:
            train_module.train(cfg, console=console, plan=the_plan.to_dict())
        except ResumeError as exc:  # nothing trained
            console.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_NOTHING_RAN) from None
        except FloatingPointError as exc:  # a non-finite loss: the run stopped; its checkpoints stay
            console.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_SOME_FAILED) from None
        return
    try:
        command = train_module.torchrun_command(cfg, ranks, nodes, rdzv_endpoint, plan=the_plan.to_dict(),
                                                max_restarts=max_restarts)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # torchrun would set OMP_NUM_THREADS=1; each rank sets its threads from its own cores anyway.
    env = {**os.environ, "OMP_NUM_THREADS": str(the_plan.threads_per_rank)}
    raise typer.Exit(subprocess.run(command, env=env).returncode)


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
def classify(plates: Annotated[list[Path], typer.Argument(help="Plate folder(s), BBBC021 layout.")],
             model: Annotated[Path, typer.Option(help="Export folder holding model.xml.")],
             out: Annotated[Path, typer.Option(help="Results folder (one sub-folder per plate when several).")],
             batch_size: int = 2,
             precision: Annotated[str, typer.Option(
                 help="f32, bf16 (where the CPU has it) or int8 (model-int8.xml).")] = "f32",
             as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False):
    """Classify every field of one or more plates at full resolution with OpenVINO."""
    from appliance.classify import classify_plate
    from appliance.inference import Classifier
    from appliance.model_card import ModelCardError

    try:
        classifier = Classifier(model, precision=precision)
    except (ModelCardError, FileNotFoundError, RuntimeError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_NOTHING_RAN) from None
    summaries, code = [], EXIT_OK
    for plate in plates:
        plate_out = out if len(plates) == 1 else out / plate.name
        try:
            summary = run_with_progress(classify_plate, plate, classifier, plate_out, batch_size=batch_size)
        except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
            console.print(f"[red]error:[/] {exc}")
            code = max(code, EXIT_NOTHING_RAN if len(plates) == 1 else EXIT_SOME_FAILED)
            continue
        summaries.append(summary)
        console.print(f"{summary['plate']}: {summary['classified']} fields classified, {summary['failed']} failed "
                      f"({summary['fields_per_s']:.2f} fields/s, {summary['precision']}) -> {plate_out}")
        if summary["failed"]:
            console.print(f"[yellow]{summary['failed']} field(s) failed; see {plate_out / 'failures.csv'}")
            code = max(code, EXIT_SOME_FAILED)
    if as_json:
        print(json.dumps(summaries, indent=2, default=str))
    raise typer.Exit(code)


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

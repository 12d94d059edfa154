"""The export commands, `export`, `benchmark` and `demo`, registered into `mcnn-appliance` by entry point.

This module imports only typer and the runtime: torch, ONNX and NNCF are imported when a command
runs, so `mcnn-appliance --help` stays fast and a runtime-only install names the extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from appliance.command_help import Command, commands_app, example
from appliance.console import EXIT_OK, EXIT_SOME_FAILED, console, extra_needed, fail, print_table
from appliance.files import write_text
from appliance.tables import MetadataError

commands = commands_app()


@commands.command(cls=Command, epilog=example("mcnn-appliance export runs/first --int8   # -> runs/first/export/"))
def export(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run folder written by `train`.")],
    out: Annotated[Path | None, typer.Option(metavar="FOLDER", help="Export folder (default RUN/export).")] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="Also write model-int8.xml (NNCF post-training quantization), kept only if accuracy holds."
        ),
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(
            metavar="DATA", help="BBBC021-layout folder to calibrate on (default: the run's training fields)."
        ),
    ] = None,
    calibration_fields: Annotated[int, typer.Option(help="Calibration fields, stratified by class.")] = 128,
    gate_fields: Annotated[int, typer.Option(help="Held-out fields the accuracy gate compares on.")] = 130,
    max_drop: Annotated[float, typer.Option(help="Largest INT8 top-1 accuracy drop kept, in points.")] = 1.0,
    force: Annotated[bool, typer.Option("--force", help="Keep the INT8 model even if it fails the gate.")] = False,
):
    """Export a run to ONNX and OpenVINO IR, checked against torch on real fields; --int8 adds an INT8 IR."""
    with extra_needed("export"):
        import export.exporter as exporter
        from export.quantize import Int8Options

    options = Int8Options(calibration, calibration_fields, gate_fields, max_drop, force) if int8 else None
    try:
        summary = exporter.export_run(run, out, int8=options, log=console.print)
    except (exporter.ExportError, MetadataError, FileNotFoundError) as exc:
        raise fail(exc) from None
    console.print(f"exported to {Path(summary['xml']).parent} in {summary['seconds']:.0f} s")
    if int8 and not summary["int8_xml"]:
        gate = summary["parity"]["quantization"]["gate"]
        console.print(
            f"[red]INT8 rejected:[/] top-1 drop {gate['drop_points']:.1f} points > --max-drop "
            f"{max_drop:g}; only the float model was kept (--force keeps INT8 anyway)"
        )
        raise typer.Exit(EXIT_SOME_FAILED)


@commands.command(
    cls=Command, epilog=example("mcnn-appliance benchmark runs/first/export --data heldout/ --json-out bench.json")
)
def benchmark(
    model_dir: Annotated[
        Path,
        typer.Argument(
            metavar="EXPORT", help="Export folder holding model.xml (and model.onnx, model-int8.xml if present)."
        ),
    ],
    fields: Annotated[int, typer.Option(help="Fields per timing round (5 rounds per backend).")] = 4,
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="DATA", help="Labelled BBBC021-layout folder for accuracy (default: the run's validation fields)."
        ),
    ] = None,
    app_seconds: Annotated[
        int, typer.Option(metavar="SECONDS", help="Seconds per benchmark_app run (0: skip it).")
    ] = 10,
    run: Annotated[
        Path | None,
        typer.Option(metavar="RUN", help="Run folder, for the torch baseline and val rows (default: EXPORT's parent)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON on stdout (not the table).")] = False,
    json_out: Annotated[Path | None, typer.Option(metavar="FILE", help="Also write the rows as JSON to FILE.")] = None,
    torch_modes: Annotated[
        str,
        typer.Option(
            "--torch",
            metavar="MODES",
            help="Torch peers, comma-separated: f32 (eager), bf16 (eager, channels_last), "
            "compiled (torch.compile of the bf16 model).",
        ),
    ] = "f32,bf16,compiled",
):
    """Throughput, latency and accuracy of torch, ONNX Runtime and OpenVINO f32/bf16/int8, side by side."""
    with extra_needed("benchmark"):
        from export.benchmark import benchmark as run_benchmark
        from export.benchmark import table

    if fields < 1:
        raise typer.BadParameter("--fields must be at least 1")
    modes = tuple(m.strip() for m in torch_modes.split(",") if m.strip())
    if not set(modes) <= {"f32", "bf16", "compiled"}:
        raise typer.BadParameter(f"--torch {torch_modes}: choose from f32, bf16, compiled")
    try:
        rows = run_benchmark(
            model_dir,
            fields=fields,
            data=data,
            app_seconds=app_seconds,
            run_dir=run,
            log=console.print,
            torch_modes=modes,
        )
    except (FileNotFoundError, RuntimeError, ValueError) as exc:  # ValueError: model card, metadata, field errors
        raise fail(exc) from None
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(table(rows))  # the table on stdout, progress notes on stderr
    if json_out:
        write_text(json_out, json.dumps(rows, indent=2))


@commands.command(cls=Command, epilog=example("mcnn-appliance demo --workdir demo"))
def demo(
    workdir: Annotated[
        Path, typer.Option(metavar="FOLDER", help="Where the synthetic plates, run and results go.")
    ] = Path("demo"),
):
    """Synthetic plates -> train (full resolution) -> export -> classify a held-out plate."""
    with extra_needed("demo"):
        import export.demo as demo_module
    summary = demo_module.run_demo(workdir, console=console)
    raise typer.Exit(EXIT_SOME_FAILED if summary["failed"] else EXIT_OK)

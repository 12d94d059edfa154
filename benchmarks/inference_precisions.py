"""Export a trained run with INT8, then benchmark every backend on it, in one run, side by side.

    .venv/bin/python benchmarks/inference_precisions.py RUN [--data HELDOUT] [--fields 4] [--json out.json]

RUN is a run folder written by `mcnn-appliance train` (its export goes to RUN/export). Without
--data, a synthetic held-out plate at the run's field size is written next to it (seed 99).
First the CPU, its AMX/BF16/VNNI features and OpenVINO's GEMM peaks (benchmarks/machine.py), and
every OpenVINO row as a share of the peak at its precision. Then the ratios, each measured in this
one process on this machine:
    OpenVINO best float / torch eager f32 throughput    target >= 5
    OpenVINO best float / best torch (eager bf16 channels_last or torch.compile)   reported
    OpenVINO int8 / bf16 throughput                     target >= 1.7
    int8 top-1 drop vs f32 (held-out, points)           target <= 1
    export including calibration and gate (s)           target < 120
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import openvino as ov
from rich.console import Console

from appliance.synth import write_dataset
from benchmarks.machine import cpu_description, cpu_line, forward_gop, gemm_peaks, peaks_line
from export.benchmark import benchmark, table
from export.exporter import export_run
from export.quantize import Int8Options
from training.run import read_run_info


def held_out_plate(run: Path) -> Path:
    """A synthetic plate the run never saw, at the run's field size (written once)."""
    config = read_run_info(run)["model_config"]
    folder = run.parent / f"{run.name}-heldout-synthetic"
    if not (folder / "BBBC021_v1_image.csv").is_file():
        write_dataset(
            folder,
            plates=1,
            fields_per_class=2,
            size=(config["height"], config["width"]),
            seed=99,
            first_plate=5,
            workers=2,
        )
    return folder


def row(rows: list[dict], backend: str, precision: str) -> dict | None:
    return next((r for r in rows if (r["backend"], r["precision"]) == (backend, precision)), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, help="labelled held-out BBBC021-layout folder")
    parser.add_argument("--fields", type=int, default=4, help="fields per timing round (5 rounds per backend)")
    parser.add_argument("--json", type=Path, help="write rows, ratios and export figures here")
    args = parser.parse_args()
    console = Console()
    cpu, peaks = cpu_description(), gemm_peaks()
    console.print(cpu_line(cpu))
    console.print(peaks_line(peaks))

    start = time.perf_counter()
    exported = export_run(args.run, int8=Int8Options(), log=console.print)
    export_s = time.perf_counter() - start
    data = args.data or held_out_plate(args.run)
    rows = benchmark(args.run / "export", fields=args.fields, data=data, log=console.print)
    console.print(table(rows))

    gop = forward_gop(ov.Core().read_model(args.run / "export" / "model.xml"))
    for r in rows:
        if r["backend"] == "openvino":
            share = r["fields_per_s"] * gop / peaks[r["precision"]]
            console.print(
                f"openvino {r['precision']}: {r['fields_per_s'] * gop:.0f} GOP/s = {share:.0%} of its GEMM peak"
            )
    torch_fps = max(
        (r["fields_per_s"] for r in rows if r["backend"] == "torch eager" and r["precision"] == "f32"), default=None
    )
    best_torch = max((r["fields_per_s"] for r in rows if r["backend"].startswith("torch")), default=None)
    best_float = max(
        (r for r in rows if r["backend"] == "openvino" and r["precision"] != "int8"), key=lambda r: r["fields_per_s"]
    )
    f32, bf16, int8 = (row(rows, "openvino", p) for p in ("f32", "bf16", "int8"))
    gate = exported["parity"]["quantization"]["gate"]
    ratios = {
        "openvino_best_float_over_torch": round(best_float["fields_per_s"] / torch_fps, 2) if torch_fps else None,
        "openvino_best_float": best_float["precision"],
        "openvino_best_float_over_best_torch": round(best_float["fields_per_s"] / best_torch, 2)
        if best_torch
        else None,
        "int8_over_bf16": round(int8["fields_per_s"] / bf16["fields_per_s"], 2) if int8 else None,
        "int8_drop_points_heldout": round(f32["accuracy"] - int8["accuracy"], 2)
        if int8 and f32["accuracy"] is not None
        else None,
        "int8_drop_points_gate": gate["drop_points"],
        "export_s": round(export_s, 1),
        "calibration_s": exported["parity"]["quantization"]["calibration_s"],
    }
    targets = [
        ("OpenVINO best float / torch eager f32", ratios["openvino_best_float_over_torch"], ">=", 5),
        (
            "OpenVINO best float / best torch (bf16 channels_last, compiled)",
            ratios["openvino_best_float_over_best_torch"],
            ">=",
            1,
        ),
        ("OpenVINO int8 / bf16", ratios["int8_over_bf16"], ">=", 1.7),
        (f"int8 top-1 drop on {data} (points)", ratios["int8_drop_points_heldout"], "<=", 1),
        ("int8 top-1 drop at the export gate (points)", ratios["int8_drop_points_gate"], "<=", 1),
        ("export incl. calibration and gate (s)", ratios["export_s"], "<", 120),
    ]
    for name, value, op, target in targets:
        met = value is not None and {">=": value >= target, "<=": value <= target, "<": value < target}[op]
        console.print(f"{name}: {value} (target {op} {target}) " + ("[green]met" if met else "[red]NOT met"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu,
                    "gemm_peaks_gop_per_s": peaks,
                    "rows": rows,
                    "ratios": ratios,
                    "quantization": exported["parity"]["quantization"],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

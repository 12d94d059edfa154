"""One exported model on every backend available, side by side: speed at full resolution, accuracy.

Rows: torch eager f32, torch eager bf16 channels_last and torch.compile (inductor) of that (when
torch and the run's weights are reachable: the run folder, by default the export folder's parent;
export/eager.py), ONNX Runtime f32 (if installed), OpenVINO f32, bf16 and
int8 (if model-int8.xml exists). Each row gives
    fields_per_s       throughput. OpenVINO: the runtime's Classifier (THROUGHPUT hint, one field
                       per request, a request per CPU stream); torch, ONNX Runtime: batches of 2
    latency_ms         batch 1; OpenVINO compiled with the LATENCY hint
    accuracy           top-1 % on labelled fields (--data, else the run's val rows), else None
    speedup_vs_torch   over the faster torch eager f32 row: it runs with 1 thread and with all of them,
                       because on a busy machine its OpenMP barriers make all threads slower
    speedup_vs_best_torch  over the fastest torch row (eager f32, eager bf16, torch.compile)
    of_benchmark_app   OpenVINO rows: fields_per_s_beside_app (ours, timed right before and
                       after benchmark_app, so both see the same load) over benchmark_app_fps
                       (its throughput on the same IR and settings); the table shows all three
Backends are timed in interleaved rounds (median of 5), so load from other processes falls on
all rows alike: on a shared machine the ratios between rows are the figures to trust.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
from rich import box
from rich.table import Table

from appliance.fieldsets import SPLIT_CSV, accuracy, from_folder, from_split, read_raw
from appliance.inference import (
    MODEL_INT8_XML,
    MODEL_XML,
    PRECISIONS,
    PROBABILITIES,
    Classifier,
    check_card,
    compile_model,
    read_card,
)
from appliance.layouts.base import Field
from export.eager import MODES, eager_predictor

BATCH = 2  # torch and ONNX Runtime run batches of this size for throughput
ROUNDS = 5  # each backend timed this many times, interleaved; the median is reported
CHUNK = 8  # fields read at a time for accuracy
# Fewer fields per round than this and a round is too short to time: its start-up, and streams left
# idle while the last fields finish, weigh on the figure (a 2-core CPU runs 2 requests at once).
MIN_TIMING_FIELDS = 4


def labelled_fields(run_dir: Path, data: Path | None) -> tuple[list[Field], str]:
    """--data's labelled fields, else the run's validation rows, else none."""
    if data is not None:
        return from_folder(data), f"labelled fields of {data}"
    split = run_dir / SPLIT_CSV
    val = [f for f in from_split(run_dir) if f.split == "val"] if split.is_file() else []
    return val, f"val rows of {split}"


def openvino_runner(xml: Path, precision: str, threads: int):
    """(run_all, run_one): the runtime's Classifier (THROUGHPUT hint), and a LATENCY-compiled model."""
    classifier = Classifier(xml, precision, threads)
    latency = compile_model(ov.Core().read_model(xml), precision, threads, "LATENCY")
    request = latency.create_infer_request()

    def run_one(raw: np.ndarray) -> np.ndarray:
        return request.infer({0: raw})[latency.output(PROBABILITIES)]

    return (lambda raw: classifier.predict(raw)[0]), run_one


def batched(predict):
    def run_all(raw: np.ndarray) -> np.ndarray:
        return np.concatenate([predict(raw[i : i + BATCH]) for i in range(0, len(raw), BATCH)])

    return run_all, predict


def onnxruntime_runner(onnx_path: Path, card, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return batched(lambda raw: session.run([PROBABILITIES], {"fields": card.normalization.apply(raw)})[0])


def torch_runner(run_dir: Path, card, threads: int, mode: str = "f32"):
    predict, run_card = eager_predictor(run_dir, threads, mode)
    if run_card.weights_sha256 != card.weights_sha256:
        raise ValueError(f"{run_dir}: its weights are not the ones this model was exported from (SHA-256 differs)")
    return batched(predict)


def time_once(run_all, run_one, timing: np.ndarray) -> tuple[float, float]:
    """(fields/s over all timing fields, one batch-1 latency in ms)."""
    start = time.perf_counter()
    run_all(timing)
    fields_per_s = len(timing) / (time.perf_counter() - start)
    start = time.perf_counter()
    run_one(timing[:1])
    return fields_per_s, 1000 * (time.perf_counter() - start)


def benchmark_app_fps(xml: Path, precision: str | None, shape: tuple[int, ...], seconds: int) -> float | None:
    """Throughput OpenVINO's own benchmark_app (shipped in the openvino wheel) reaches on the IR; precision None:
    benchmark_app's own default (the CPU plugin's: bf16 where the CPU computes it natively)."""
    command = [
        sys.executable,
        "-c",
        "import sys; from openvino.tools.benchmark.main import main; sys.exit(main())",
        "-m",
        str(xml),
        "-d",
        "CPU",
        "-hint",
        "throughput",
        "-t",
        str(seconds),
        "-data_shape",
        "[" + ",".join(map(str, shape)) + "]",
    ]
    if precision is not None:
        command += ["-infer_precision", PRECISIONS[precision].get_type_name()]
    result = subprocess.run(command, capture_output=True, text=True)
    found = re.search(r"Throughput:\s+([\d.]+) FPS", result.stdout + result.stderr)
    return float(found.group(1)) if found else None


def timing_fields(labelled: list[Field], card, fields: int) -> np.ndarray:
    """Labelled fields when there are some (repeated as needed), else noise of the right size and depth."""
    if labelled:
        return read_raw([labelled[i % len(labelled)] for i in range(fields)], card.size)
    shape = (fields, len(card.channels), *card.size)
    return np.random.default_rng(0).integers(0, 2**card.bit_depth, shape, dtype=np.uint16)


def backends(model_dir: Path, run_dir: Path, card, threads: int, log, torch_modes=MODES) -> list[tuple]:
    """(backend, precision, threads, make) for each backend present; make() -> (run_all, run_one)."""
    found = []
    if (run_dir / "run.json").is_file():
        found += [("torch eager", "f32", n, lambda n=n: torch_runner(run_dir, card, n)) for n in sorted({1, threads})]
        # what a PyTorch user would pick instead of us: bf16 channels_last, eager and torch.compile'd
        found += [
            (backend, "bf16", threads, lambda mode=mode: torch_runner(run_dir, card, threads, mode))
            for backend, mode in (("torch eager", "bf16"), ("torch.compile", "compiled"))
            if mode in torch_modes
        ]
    else:
        log(f"torch eager: skipped, no run.json in {run_dir}")
    if (model_dir / "model.onnx").is_file():
        found.append(
            ("onnxruntime", "f32", threads, lambda: onnxruntime_runner(model_dir / "model.onnx", card, threads))
        )
    else:
        log(f"onnxruntime: skipped, no {model_dir / 'model.onnx'}")
    for precision in ("f32", "bf16", "int8"):
        ir = model_dir / (MODEL_INT8_XML if precision == "int8" else MODEL_XML)
        if ir.is_file():
            found.append(("openvino", precision, threads, lambda ir=ir, p=precision: openvino_runner(ir, p, threads)))
        else:
            log(f"openvino {precision}: skipped, no {ir}")
    return found


def benchmark(
    model_dir: Path,
    fields: int = 4,
    data: Path | None = None,
    app_seconds: int = 10,
    run_dir: Path | None = None,
    threads: int | None = None,
    log=print,
    torch_modes: tuple[str, ...] = MODES,
) -> list[dict]:
    """The rows described above, in the order torch, ONNX Runtime, OpenVINO f32, bf16, int8."""
    model_dir = Path(model_dir)
    run_dir = Path(run_dir) if run_dir is not None else model_dir.parent
    xml = model_dir / MODEL_XML
    network = ov.Core().read_model(xml)
    card = read_card(network, str(xml))
    check_card(network, card, str(xml))
    threads = threads or len(os.sched_getaffinity(0))

    labelled, source = labelled_fields(run_dir, data)
    labelled = [f for f in labelled if f.moa in card.labels]
    timing = timing_fields(labelled, card, fields)
    if fields < MIN_TIMING_FIELDS:
        log(
            f"warning: timing on {fields} field(s) per round, fewer than {MIN_TIMING_FIELDS}: start-up and idle "
            f"streams weigh on the fields/s; --fields {MIN_TIMING_FIELDS} or more for figures to compare"
        )
    log(
        f"timing on {fields} {'' if labelled else 'random '}fields of {card.input_height}x{card.input_width}; "
        + (f"accuracy on {len(labelled)} {source}" if labelled else f"no {source}: accuracy not measured (pass --data)")
    )

    built = []
    for backend, precision, n, make in backends(model_dir, run_dir, card, threads, log, torch_modes):
        try:
            run_all, run_one = make()
        except ModuleNotFoundError as exc:
            log(f"{backend}: skipped ({exc})")
            continue
        run_one(timing[:1])  # warm-up: first inferences build kernels and buffers
        run_all(timing[:BATCH])
        built.append(((backend, precision, n), run_all, run_one))
    times: dict[tuple, list[tuple[float, float]]] = {key: [] for key, _, _ in built}
    for _ in range(ROUNDS):  # every backend in turn, each round
        for key, run_all, run_one in built:
            times[key].append(time_once(run_all, run_one, timing))

    rows, accuracies = [], {}
    for (backend, precision, n), run_all, run_one in built:
        if labelled and (backend, precision) not in accuracies:  # the same numbers at any thread count
            probabilities = [
                run_all(read_raw(labelled[i : i + CHUNK], card.size)) for i in range(0, len(labelled), CHUNK)
            ]
            accuracies[backend, precision] = round(accuracy(np.concatenate(probabilities), labelled, card.labels), 2)
        fields_per_s = statistics.median(t[0] for t in times[backend, precision, n])
        row = {
            "backend": backend,
            "precision": precision,
            "threads": n,
            "fields_per_s": round(fields_per_s, 3),
            "latency_ms": round(statistics.median(t[1] for t in times[backend, precision, n]), 1),
            "accuracy": accuracies.get((backend, precision)),
            "benchmark_app_fps": None,
            "fields_per_s_beside_app": None,
            "of_benchmark_app": None,
        }
        if backend == "openvino" and app_seconds > 0:
            ir = model_dir / (MODEL_INT8_XML if precision == "int8" else MODEL_XML)
            before = time_once(run_all, run_one, timing)[0]
            reference = benchmark_app_fps(ir, precision, (1, *timing.shape[1:]), app_seconds)
            ours = (before + time_once(run_all, run_one, timing)[0]) / 2
            if reference:
                ours = round(ours, 3)
                row.update(benchmark_app_fps=reference, fields_per_s_beside_app=ours)
                row["of_benchmark_app"] = round(ours / reference, 3)
            else:
                log(f"benchmark_app gave no throughput for {ir} at {precision}")
        log(f"{backend} {precision}, {n} thread(s): {row['fields_per_s']:.2f} fields/s, {row['latency_ms']:.0f} ms")
        rows.append(row)
    torch_rows = [r for r in rows if r["backend"].startswith("torch")]
    torch_fps = max((r["fields_per_s"] for r in torch_rows if r["precision"] == "f32"), default=None)
    best_torch = max((r["fields_per_s"] for r in torch_rows), default=None)
    for row in rows:
        row["speedup_vs_torch"] = round(row["fields_per_s"] / torch_fps, 2) if torch_fps else None
        row["speedup_vs_best_torch"] = round(row["fields_per_s"] / best_torch, 2) if best_torch else None
    return rows


def table(rows: list[dict]) -> Table:
    out = Table(
        "backend",
        "threads",
        "fields/s",
        "latency ms",
        "top-1 %",
        "x torch",
        "x best torch",
        "of app",
        box=box.SIMPLE_HEAD,
        title="M-CNN inference",
        caption="latency: batch 1, LATENCY hint; of app: ours / app, our fields/s timed right before and "
        "after OpenVINO benchmark_app over its fields/s on the same IR",
    )
    out.columns[0].no_wrap = True

    def show(value, fmt):
        return "-" if value is None else format(value, fmt)

    for r in rows:
        out.add_row(
            f"{r['backend']} {r['precision']}",
            str(r["threads"]),
            show(r["fields_per_s"], ".2f"),
            show(r["latency_ms"], ".0f"),
            show(r["accuracy"], ".1f"),
            show(r["speedup_vs_torch"], ".2f"),
            show(r["speedup_vs_best_torch"], ".2f"),
            of_app(r),
        )
    return out


def of_app(row: dict) -> str:
    """'91% 2.91/3.20': the ratio and the two fields/s it is made of, so the table can be checked."""
    if row["of_benchmark_app"] is None:
        return "-"
    return f"{row['of_benchmark_app']:.0%} {row['fields_per_s_beside_app']:.2f}/{row['benchmark_app_fps']:.2f}"

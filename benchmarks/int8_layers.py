"""Where the INT8 model's time goes, beside the bf16 model's: OpenVINO's per-layer counters, one run.

    .venv/bin/python benchmarks/int8_layers.py EXPORT_DIR [--inferences 5] [--top 15]

EXPORT_DIR holds model.xml and model-int8.xml (`mcnn-appliance export RUN --int8`). Both are
compiled with PERF_COUNT on one stream (LATENCY hint, every thread), run on the same random
full-size field, and OpenVINO's profiling info is summed per layer over the inferences:
    by kind       time per (layer type, kernel) in each model: what INT8 speeds up and what it does not
    float layers  the INT8 model's layers still computed in f32/bf16, and their share of its time
    top layers    the slowest layers of each model, by name, with their kernel and precision
The ratio bf16 time / int8 time is printed in total and for convolutions and matmuls alone, so an
INT8 gain that falls short shows where (the uint16 input path, layers left in float, reorders).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.precision import MODEL_INT8_XML, MODEL_XML
from appliance.threads import compute_threads
from benchmarks.machine import cpu_description, cpu_line

COMPUTE = ("Convolution", "FullyConnected", "MatMul")  # prefixes: also their quantized variants


def layer_times(xml: Path, precision: ov.Type, inferences: int) -> list[dict]:
    """One row per executed layer: name, type, kernel (exec_type), microseconds summed over inferences."""
    network = ov.Core().read_model(xml)
    config = {
        hints.inference_precision: precision,
        props.inference_num_threads: compute_threads(),
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.enable_profiling: True,
    }
    compiled = ov.Core().compile_model(network, "CPU", config)
    request = compiled.create_infer_request()
    shape = [1, *network.input(0).get_partial_shape()[1:].to_shape()]
    field = np.random.default_rng(0).integers(200, 4000, shape, dtype=np.uint16)
    request.infer({0: field})  # kernels built; not counted
    totals: dict[str, dict] = {}
    for _ in range(inferences):
        request.infer({0: field})
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            row = totals.setdefault(info.node_name, {"name": info.node_name, "type": info.node_type, "us": 0.0})
            row["kernel"] = info.exec_type
            row["us"] += info.real_time.total_seconds() * 1e6 / inferences
    return list(totals.values())


def by_kind(rows: list[dict]) -> dict[tuple[str, str], float]:
    kinds: dict[tuple[str, str], float] = defaultdict(float)
    for row in rows:
        kinds[row["type"], row["kernel"]] += row["us"]
    return kinds


def milliseconds(rows: list[dict], types: tuple[str, ...] | None = None) -> float:
    return sum(r["us"] for r in rows if types is None or r["type"].startswith(types)) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--inferences", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(cpu_line(cpu_description()))
    bf16 = layer_times(args.export / MODEL_XML, ov.Type.bf16, args.inferences)
    int8 = layer_times(args.export / MODEL_INT8_XML, ov.Type.bf16, args.inferences)  # float leftovers in bf16

    print(
        f"\nper field: bf16 {milliseconds(bf16):.1f} ms, int8 {milliseconds(int8):.1f} ms, "
        f"bf16 / int8 = {milliseconds(bf16) / milliseconds(int8):.2f}"
    )
    compute_bf16, compute_int8 = milliseconds(bf16, COMPUTE), milliseconds(int8, COMPUTE)
    print(
        f"convolutions and matmuls alone: bf16 {compute_bf16:.1f} ms, int8 {compute_int8:.1f} ms, "
        f"bf16 / int8 = {compute_bf16 / compute_int8:.2f}"
    )

    print(f"\n{'layer type':<22} {'kernel (bf16 model)':<34} {'ms':>7}   {'kernel (int8 model)':<34} {'ms':>7}")
    kinds_bf16, kinds_int8 = by_kind(bf16), by_kind(int8)
    types = sorted(
        {t for t, _ in kinds_bf16} | {t for t, _ in kinds_int8},
        key=lambda t: -sum(v for (k, _), v in {**kinds_bf16, **kinds_int8}.items() if k == t),
    )
    for layer_type in types:
        left = sorted(((k, v) for (t, k), v in kinds_bf16.items() if t == layer_type), key=lambda x: -x[1])
        right = sorted(((k, v) for (t, k), v in kinds_int8.items() if t == layer_type), key=lambda x: -x[1])
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ("", 0.0)
            b = right[i] if i < len(right) else ("", 0.0)
            print(f"{layer_type if i == 0 else '':<22} {a[0]:<34} {a[1] / 1000:>7.2f}   {b[0]:<34} {b[1] / 1000:>7.2f}")

    floats = [r for r in int8 if r["type"].startswith(COMPUTE) and "I8" not in r["kernel"].upper()]
    print(
        f"\nINT8 model: {len(floats)} convolution/matmul layer(s) not run in int8, "
        f"{milliseconds(floats):.1f} ms = {milliseconds(floats) / milliseconds(int8):.0%} of its time"
    )
    for r in sorted(floats, key=lambda r: -r["us"])[: args.top]:
        print(f"  {r['name']:<60} {r['kernel']:<30} {r['us'] / 1000:7.2f} ms")
    for name, rows in (("bf16", bf16), ("int8", int8)):
        print(f"\nslowest layers, {name} model:")
        for r in sorted(rows, key=lambda r: -r["us"])[: args.top]:
            print(f"  {r['name'][:60]:<60} {r['type']:<16} {r['kernel']:<30} {r['us'] / 1000:7.2f} ms")


if __name__ == "__main__":
    main()

"""What every benchmark prints first: the CPU, its matrix instruction sets, and the peaks it measures now.

A throughput means little without the machine it came from: the CPU model, whether it has AMX,
AVX512-BF16 and VNNI, and the matrix-multiply peaks of OpenVINO's CPU plugin measured in the same
run (f32, bf16, int8), so each figure is also printed as a share of its peak. Our machines vary
between sessions (AMD Zen 5 or Intel Xeon with AMX) and up to 2x between machines of one kind.

    .venv/bin/python benchmarks/machine.py          # prints the CPU line and the peaks
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import openvino.properties as props
import openvino.properties.hint as hints

from appliance.precision import cpu_flags, cpu_model
from appliance.threads import compute_threads

FEATURES = {  # what we print: /proc/cpuinfo flag -> the name in vendor documents
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "avx512_bf16": "AVX512-BF16",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
}
TYPES = {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "int8": ov.Type.f32}  # int8: FakeQuantize picks the kernel


def cpu_description() -> dict:
    flags = cpu_flags()
    return {
        "model": cpu_model(),
        "threads": compute_threads(),
        "features": [name for flag, name in FEATURES.items() if flag in flags],
    }


def cpu_line(cpu: dict) -> str:
    return f"CPU: {cpu['model']}, {cpu['threads']} threads, {', '.join(cpu['features']) or 'no AMX/BF16/VNNI'}"


def gemm_model(n: int, int8: bool) -> ov.Model:
    """x (n, n) @ w (n, n); int8 puts FakeQuantize on both, which the CPU plugin runs as a u8 x i8 GEMM."""
    x = ops.parameter([n, n], np.float32)
    w = ops.constant(np.random.default_rng(0).uniform(-4, 4, (n, n)).astype(np.float32))

    def quantized(node, low, high, levels):
        lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
        return ops.fake_quantize(node, lo, hi, lo, hi, levels)

    a, b = (quantized(x, 0.0, 4.0, 256), quantized(w, -4.0, 4.0, 255)) if int8 else (x, w)
    return ov.Model([ops.matmul(a, b, False, True)], [x])


def gemm_peak(precision: str, threads: int, n: int = 4096, seconds: float = 3.0) -> float:
    """GOP/s of one large matrix multiply in OpenVINO at this precision (best of ~1 s rounds)."""
    compiled = ov.Core().compile_model(
        gemm_model(n, precision == "int8"),
        "CPU",
        {
            hints.inference_precision: TYPES[precision],
            props.inference_num_threads: threads,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
        },
    )
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).uniform(0, 4, (n, n)).astype(np.float32)
    request.infer({0: x})  # first call: kernels built
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 4:
            request.infer({0: x})
            calls += 1
        best = max(best, calls * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def gemm_peaks(threads: int | None = None) -> dict[str, float]:
    threads = threads or compute_threads()
    return {precision: round(gemm_peak(precision, threads), 1) for precision in TYPES}


def peaks_line(peaks: dict[str, float]) -> str:
    return "OpenVINO GEMM peak (GOP/s): " + ", ".join(f"{p} {v:.0f}" for p, v in peaks.items())


def forward_gop(network: ov.Model) -> float:
    """Giga-operations of one field's forward pass: 2 per multiply-accumulate of every convolution and matmul."""
    network = network.clone()
    network.reshape([1, *network.input(0).get_partial_shape()[1:].to_shape()])  # one field: static shapes
    total = 0
    for op in network.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "MatMul"):
            weights = op.input(1).get_partial_shape().to_shape()
            out = op.output(0).get_partial_shape().to_shape()
            if op.get_type_name() == "Convolution":  # out (1, Co, H, W), weights (Co, Ci, kh, kw)
                total += 2 * int(np.prod(out)) * int(np.prod(weights[1:]))
            else:  # out (1, N), weights (N, K) or (K, N)
                total += 2 * int(np.prod(out)) * int(np.prod(weights)) // int(out[-1])
    return total / 1e9


def compiled_precision(xml: Path, precision: str | None) -> str:
    """The precision the CPU plugin computes this IR at (int8 where quantized), as benchmark_app would run it."""
    network = ov.Core().read_model(xml)
    if any(op.get_type_name() == "FakeQuantize" for op in network.get_ops()):
        return "int8"
    config = {} if precision is None else {"INFERENCE_PRECISION_HINT": precision}
    return ov.Core().compile_model(network, "CPU", config).get_property("INFERENCE_PRECISION_HINT").get_type_name()


def field_size(model: Path) -> tuple[int, int]:
    """The (height, width) an export folder's model takes, from its card."""
    from appliance.inference import read_card, resolve_model

    xml = resolve_model(model)
    return read_card(ov.Core().read_model(xml), str(xml)).size


def announce() -> dict:
    """Print the CPU line and the peaks measured now; returns both, for the benchmark's JSON."""
    cpu, peaks = cpu_description(), gemm_peaks()
    print(cpu_line(cpu))
    print(peaks_line(peaks), flush=True)
    return {"cpu": cpu, "gemm_peaks_gop_per_s": peaks}


def main() -> None:
    announce()


if __name__ == "__main__":
    main()

"""INT8 post-training quantization of the exported model (NNCF), kept only if accuracy holds.

    OUT/model-int8.xml/.bin   model.onnx behind the same uint16 preprocessing, quantized by
                              nncf.quantize on raw calibration fields; the card says precision
                              int8 and rt_info ["model_info", "quantization"] says how
    parity.json "quantization"   calibration, the gate's figures, and whether INT8 was kept

Calibration fields: stratified by class from the run's split.csv train rows, or from a
BBBC021-layout folder. The gate compares INT8 with the f32 IR, top-1 accuracy on held-out
fields: split.csv val rows, or train rows the calibration did not use.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import nncf
import numpy as np
import openvino as ov

from appliance.fieldsets import accuracy, from_folder, from_split, read_raw, stratified
from appliance.inference import MODEL_INT8_XML, MODEL_XML, Classifier, check_card, read_card
from appliance.layouts.base import Field
from appliance.model_card import ModelCard
from export import ExportError
from export.ir import raw_input_model, save_with_card

CALIBRATION_FIELDS = 128  # about 10 per class; each costs ~0.8 s at 1024x1280 on 2 (busy) cores
GATE_FIELDS = 130
PRESET = nncf.QuantizationPreset.MIXED  # asymmetric activations: the normalised input is signed
# Bias correction doubled calibration time (statistics of every layer's full-resolution input)
# and changed nothing measurable on a trained M-CNN: same top-1, same mean |p_int8 - p_f32|.
ADVANCED = nncf.AdvancedQuantizationParameters(disable_bias_correction=True)
# The linear layers stay in float: the first one (81,920 x 512 weights, batch 1) is bound by its weight
# traffic, and the CPU plugin's int8 kernel for it ran 3.4x slower than bf16 (13.9 ms against 4.0 ms a
# field: benchmarks/int8_layers.py, Zen 5). The convolutions, nine tenths of the work, are quantized.
FLOAT_LAYERS = nncf.IgnoredScope(types=["MatMul"])


@dataclass(frozen=True)
class Int8Options:
    """What `export --int8` quantizes on and when it keeps the result."""

    calibration: Path | None = None  # a BBBC021-layout folder; default: the run's training fields
    calibration_fields: int = CALIBRATION_FIELDS  # stratified by class
    gate_fields: int = GATE_FIELDS  # held-out fields the accuracy gate compares on
    max_drop: float = 1.0  # the largest top-1 accuracy drop kept, in points
    force: bool = False  # keep the INT8 model even if it fails the gate


def choose_fields(run_dir: Path, options: Int8Options) -> tuple[dict, list[Field], dict, list[Field]]:
    """(calibration description, fields), (gate description, fields); never the same field in both."""
    calibration, calibration_fields = options.calibration, options.calibration_fields
    rows = from_split(run_dir)
    train, val = [f for f in rows if f.split == "train"], [f for f in rows if f.split == "val"]
    if calibration is not None:
        calib, source = stratified(from_folder(calibration), calibration_fields), str(calibration)
    else:  # without val rows, keep half of the training rows for the gate
        calib = stratified(train, calibration_fields if val else min(calibration_fields, len(train) // 2))
        source = f"{run_dir}/split.csv train rows"
    used = {tuple(p.resolve() for p in f.paths) for f in calib}
    unused_train = [f for f in train if tuple(p.resolve() for p in f.paths) not in used]
    gate = stratified(val or unused_train, options.gate_fields)
    gate_source = f"{run_dir}/split.csv " + ("val rows" if val else "train rows not used for calibration")
    if not calib:
        raise ExportError(f"no calibration fields in {source}")
    if not gate:
        raise ExportError(f"no held-out fields for the INT8 accuracy gate in {gate_source}")
    for role, fields, where in (("calibration", calib, source), ("gate", gate, gate_source)):
        for field in fields:
            missing = [p for p in field.paths if not p.is_file()]
            if missing:
                raise ExportError(f"{role} field {missing[0]} (from {where}): file not found")
    calib_info = {"fields": len(calib), "requested": calibration_fields, "source": source}
    gate_info = {"fields": len(gate), "requested": options.gate_fields, "source": gate_source}
    return calib_info, calib, gate_info, gate


def field_count_warnings(calib_info: dict, gate_info: dict, max_drop: float) -> list[str]:
    """What a small run makes of the calibration and the gate: fewer fields than asked for, and a gate
    so coarse that one field moves it by more than the allowed drop (it cannot see such a drop)."""
    warnings = []
    for role, info in (("calibrates", calib_info), ("gates", gate_info)):
        if info["fields"] < info["requested"]:
            warnings.append(
                f"int8 {role} on {info['fields']} fields, fewer than the {info['requested']} asked for: "
                f"{info['source']} holds no more"
            )
    per_field = 100 / gate_info["fields"]
    if per_field > max_drop:
        warnings.append(
            f"the gate's {gate_info['fields']} fields make one field {per_field:.1f} points, more than the allowed "
            f"drop of {max_drop:g}: it passes only if INT8 gets every one of them the same as f32 or better; "
            f"{math.ceil(100 / max_drop)} or more held-out fields make it finer"
        )
    return warnings


def quantize(onnx_path: Path, card: ModelCard, calibration: list[Field]):
    """The raw-input IR quantized on calibration fields fed as raw uint16, one at a time."""
    dataset = nncf.Dataset(calibration, lambda field: read_raw([field], card.size))
    return nncf.quantize(
        raw_input_model(onnx_path, card),
        dataset,
        preset=PRESET,
        subset_size=len(calibration),
        advanced_parameters=ADVANCED,
        ignored_scope=FLOAT_LAYERS,
    )


def compare(float_xml: Path, int8_xml: Path, fields: list[Field], batch: int = 2) -> dict:
    """Top-1 accuracy of both models on the same fields, read once."""
    f32, int8 = Classifier(float_xml, "f32"), Classifier(int8_xml, "int8")
    p32, p8 = [], []
    for i in range(0, len(fields), batch):
        raw = read_raw(fields[i : i + batch], f32.size)
        p32.append(f32.predict(raw)[0])
        p8.append(int8.predict(raw)[0])
    p32, p8 = np.concatenate(p32), np.concatenate(p8)
    acc32, acc8 = accuracy(p32, fields, f32.labels), accuracy(p8, fields, f32.labels)
    return {
        "f32_accuracy": round(acc32, 2),
        "int8_accuracy": round(acc8, 2),
        "drop_points": round(acc32 - acc8, 2),
        "top1_agreement": round(float(100 * (p32.argmax(1) == p8.argmax(1)).mean()), 2),
        "max_abs_diff": float(np.abs(p32 - p8).max()),
    }


def quantize_export(run_dir: Path, export_dir: Path, options: Int8Options = Int8Options(), log=print) -> dict:
    """Write model-int8.xml next to model.xml if the gate passes (or force); returns parity.json's section."""
    start = time.perf_counter()
    export_dir = Path(export_dir)
    float_xml, int8_xml = export_dir / MODEL_XML, export_dir / MODEL_INT8_XML
    network = ov.Core().read_model(float_xml)  # the card only: compare() compiles the model
    card = read_card(network, str(float_xml))
    check_card(network, card, str(float_xml))
    calib_info, calib, gate_info, gate = choose_fields(Path(run_dir), options)
    warnings = field_count_warnings(calib_info, gate_info, options.max_drop)
    for warning in warnings:
        log(f"int8: warning: {warning}")
    log(
        f"int8: calibrating on {calib_info['fields']} fields ({calib_info['source']}), "
        f"gating on {gate_info['fields']} ({gate_info['source']})"
    )
    model = quantize(export_dir / "model.onnx", card, calib)
    how = {
        "method": "NNCF post-training quantization",
        "float_layers": "MatMul (the linear layers)",
        "nncf": nncf.__version__,
        "preset": PRESET.value,
        "bias_correction": False,
        "calibration": calib_info,
    }
    candidate = export_dir / "model-int8.candidate.xml"
    save_with_card(model, replace(card, precision="int8"), candidate, {"quantization": json.dumps(how)})
    calibrated = time.perf_counter() - start

    gate_info.update(compare(float_xml, candidate, gate))
    max_drop = options.max_drop
    kept = gate_info["drop_points"] <= max_drop or options.force
    section = {
        **how,
        "gate": {**gate_info, "max_drop": max_drop},
        "warnings": warnings,
        "kept": kept,
        "forced": kept and gate_info["drop_points"] > max_drop,
        "file": int8_xml.name if kept else None,
        "calibration_s": round(calibrated, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    for suffix in (".xml", ".bin"):
        candidate.with_suffix(suffix).unlink()
    if kept:  # the gate rides in the model, where `--precision auto` reads it (appliance/precision.py)
        gate = {**section["gate"], "passed": not section["forced"]}
        extra = {"quantization": json.dumps(how), "int8_gate": json.dumps(gate)}
        save_with_card(model, replace(card, precision="int8"), int8_xml, extra)
    log(
        f"int8: top-1 {gate_info['int8_accuracy']:.1f}% vs f32 {gate_info['f32_accuracy']:.1f}% on "
        f"{gate_info['fields']} held-out fields (drop {gate_info['drop_points']:+.1f} points, allowed {max_drop:g}); "
        + ("kept" + (" (forced)" if section["forced"] else "") + f": {int8_xml}" if kept else "INT8 model NOT kept")
    )
    return section

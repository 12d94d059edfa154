"""Export a training run for the appliance: ONNX, then OpenVINO IR, each checked against torch.

    OUT/model.onnx    input `fields` (N, 3, H, W) float32 normalised; outputs `probabilities`
                      and `embedding`; the model card as metadata_props
    OUT/model.xml     the same network taking RAW uint16 pixels (normalisation in the graph),
    OUT/model.bin     the model card in rt_info ["model_info", key]
    OUT/model-int8.*  with int8 options: quantized with NNCF, kept if it passes the accuracy gate
    OUT/parity.json   torch vs ONNX Runtime vs OpenVINO on real fields of the run
                      (and, with int8, the quantization and its gate: export/quantize.py)

Parity runs on fields listed in the run's split.csv: a missing file is an error, never a skip.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from appliance.fieldsets import SPLIT_CSV, from_split, read_raw
from appliance.files import write_atomically, write_json
from appliance.imageio import FieldError
from appliance.inference import EMBEDDING, MODEL_INT8_XML, MODEL_XML, PROBABILITIES, Classifier
from appliance.ir_preprocessing import INPUT
from appliance.model_card import ModelCard
from export import ExportError
from export.ir import raw_input_model, save_with_card
from export.quantize import Int8Options, quantize_export
from export.reference import training_reference
from training.predict import Predictor, load_predictor

OPSET = 18
TOLERANCE = 1e-3  # max abs difference in probabilities


def read_parity_fields(run_dir: Path, card: ModelCard, count: int) -> tuple[list[str], np.ndarray]:
    """Up to `count` validation fields (training fields if there are none) as raw uint16."""
    split_csv = Path(run_dir) / SPLIT_CSV
    rows = from_split(run_dir)
    chosen = ([f for f in rows if f.split == "val"] or [f for f in rows if f.split == "train"])[:count]
    if not chosen:
        raise ExportError(f"{split_csv}: no train or val fields to check the export on")
    try:
        raw = read_raw(chosen, card.size)
    except FieldError as exc:
        raise ExportError(f"parity field {exc.path} (listed in {split_csv}): {exc.reason}") from exc
    return [f.name for f in chosen], raw


def export_onnx(module: Predictor, card: ModelCard, path: Path) -> None:
    """torch.export-based exporter, batch dimension dynamic, weights inside the one file."""
    sample = torch.zeros(2, len(card.channels), *card.size)  # batch 2: a batch of 1 would be specialised
    # Quiet torch's notes on torchvision ops and its own deprecations: nothing the user can act on.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            module,
            (sample,),
            input_names=[INPUT],
            output_names=[PROBABILITIES, EMBEDDING],
            dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, card.to_metadata())
    onnx.checker.check_model(proto, full_check=True)
    write_atomically(path, lambda tmp: onnx.save(proto, str(tmp)))


def compare(name: str, reference: np.ndarray, probabilities: np.ndarray) -> dict:
    figures = {
        "max_abs_diff": float(np.abs(reference - probabilities).max()),
        "top1_agree": bool((reference.argmax(1) == probabilities.argmax(1)).all()),
    }
    if not figures["top1_agree"] or figures["max_abs_diff"] > TOLERANCE:
        raise ExportError(
            f"{name} disagrees with torch: max abs difference {figures['max_abs_diff']:.2e} "
            f"(tolerance {TOLERANCE:g}), top-1 identical: {figures['top1_agree']}"
        )
    return figures


def parity_line(backend: str, figures: dict, fields: int) -> str:
    return f"parity {backend}: max abs diff {figures['max_abs_diff']:.2e} on {fields} fields, top-1 identical"


def export_run(
    run_dir: Path, out_dir: Path | None = None, parity_fields: int = 4, int8: Int8Options | None = None, log=print
) -> dict:
    """The f32 export with its parity checks, then (with int8 options) the quantized model behind its accuracy gate."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    module, _ = load_predictor(run_dir)  # what the appliance runs: probabilities and embedding
    # Read the parity fields first: a missing file should fail before minutes of export.
    names, raw = read_parity_fields(run_dir, module.card, parity_fields)
    reference = module.predict(raw)[0]
    # The training embeddings' summary rides in the card: the runtime's Classify_Distance needs it.
    card = dataclasses.replace(module.card, reference=training_reference(module.predict, run_dir, module.card.size))
    log(
        f"embedding reference: {card.reference.fields} training fields, "
        f"{len(card.reference.labels)} centroids, flag beyond {card.reference.threshold:.3g}"
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, xml_path = out_dir / "model.onnx", out_dir / MODEL_XML
    for stale in (out_dir / MODEL_INT8_XML, (out_dir / MODEL_INT8_XML).with_suffix(".bin")):
        stale.unlink(missing_ok=True)  # quantized from an earlier model.onnx
    export_onnx(module, card, onnx_path)
    log(
        f"onnx: {onnx_path} ({onnx_path.stat().st_size / 1e6:.0f} MB, opset {OPSET}) "
        f"after {time.perf_counter() - start:.1f} s"
    )

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probs = session.run([PROBABILITIES], {INPUT: card.normalization.apply(raw)})[0]
    parity = {"fields": names, "tolerance": TOLERANCE, "onnxruntime": compare("ONNX Runtime", reference, onnx_probs)}
    log(parity_line("onnxruntime", parity["onnxruntime"], len(names)))

    save_with_card(raw_input_model(onnx_path, card), card, xml_path)
    log(f"openvino: {xml_path} (uint16 input, normalisation in the graph)")
    ov_probs, _ = Classifier(xml_path, precision="f32").predict(raw)  # also checks the card reads back
    parity["openvino"] = compare("OpenVINO", reference, ov_probs)
    log(parity_line("openvino", parity["openvino"], len(names)))

    summary = {"onnx": str(onnx_path), "xml": str(xml_path), "parity": parity}
    if int8 is not None:
        parity["quantization"] = quantize_export(run_dir, out_dir, int8, log)
        summary["int8_xml"] = str(out_dir / MODEL_INT8_XML) if parity["quantization"]["kept"] else None
    write_json(out_dir / "parity.json", parity)
    return {**summary, "seconds": round(time.perf_counter() - start, 2)}

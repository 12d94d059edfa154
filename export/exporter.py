"""Export a training run for the appliance: ONNX, then OpenVINO IR, each checked against torch.

    OUT/model.onnx    input `fields` (N, 3, H, W) float32 normalised; outputs `probabilities`
                      and `embedding`; the model card as metadata_props
    OUT/model.xml     the same network taking RAW uint16 pixels (normalisation in the graph),
    OUT/model.bin     the model card in rt_info ["model_info", key]
    OUT/parity.json   torch vs ONNX Runtime vs OpenVINO on real fields of the run

Parity runs on fields listed in the run's split.csv: a missing file is an error, never a skip.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import torch
from torch import nn

from appliance.imageio import FieldError, read_field
from appliance.inference import EMBEDDING, MODEL_XML, PROBABILITIES, Classifier
from appliance.metadata import read_table
from appliance.model_card import ModelCard
from training.run import load_run, model_card, write_atomically

INPUT = "fields"
OPSET = 18
TOLERANCE = 1e-3  # max abs difference in probabilities
SPLIT_CSV = "split.csv"
SPLIT_COLUMNS = ("plate", "well", "site", "moa", "split", "path_dapi", "path_tubulin", "path_actin")


class ExportError(RuntimeError):
    """The export cannot be trusted: parity failed or its inputs are missing; the message says which."""


class Exported(nn.Module):
    """What the appliance runs: class probabilities and the field's embedding in one pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.forward_features(fields)
        return torch.softmax(self.model.forward_head(embedding), dim=1), embedding


def read_parity_fields(run_dir: Path, card: ModelCard, count: int) -> tuple[list[str], np.ndarray]:
    """Up to `count` validation fields (training fields if there are none) as raw uint16."""
    split_csv = Path(run_dir) / SPLIT_CSV
    rows = read_table(split_csv, SPLIT_COLUMNS)
    chosen = ([r for r in rows if r["split"] == "val"] or [r for r in rows if r["split"] == "train"])[:count]
    if not chosen:
        raise ExportError(f"{split_csv}: no train or val fields to check the export on")
    raw = np.empty((len(chosen), len(card.channels), *card.size), dtype=np.uint16)
    for i, row in enumerate(chosen):
        paths = [Path(row[f"path_{c.lower()}"]) for c in card.channels]
        try:
            read_field(paths, card.size, out=raw[i])
        except FieldError as exc:
            raise ExportError(f"parity field {exc.path} (listed in {split_csv}): {exc.reason}") from exc
    return [f"{r['plate']}/{r['well']}/s{r['site']}" for r in chosen], raw


def export_onnx(module: Exported, card: ModelCard, path: Path) -> None:
    """torch.export-based exporter, batch dimension dynamic, weights inside the one file."""
    sample = torch.zeros(2, len(card.channels), *card.size)  # batch 2: a batch of 1 would be specialised
    # Quiet torch's notes on torchvision ops and its own deprecations: nothing the user can act on.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            module, (sample,), input_names=[INPUT], output_names=[PROBABILITIES, EMBEDDING],
            dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}}, opset_version=OPSET,
            dynamo=True, external_data=False, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, card.to_metadata())
    onnx.checker.check_model(proto, full_check=True)
    write_atomically(path, lambda tmp: onnx.save(proto, str(tmp)))


def export_openvino(onnx_path: Path, card: ModelCard, path: Path) -> None:
    """The IR takes raw uint16 pixels: type conversion and normalisation run in the graph."""
    model = ov.convert_model(onnx_path)
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input(INPUT).tensor().set_element_type(ov.Type.u16).set_layout(ov.Layout("NCHW"))
    ppp.input(INPUT).model().set_layout(ov.Layout("NCHW"))
    norm = card.normalization
    ppp.input(INPUT).preprocess().convert_element_type(ov.Type.f32).mean(list(norm.mean)).scale(list(norm.std))
    model = ppp.build()
    for key, value in card.to_metadata().items():
        model.set_rt_info(value, ["model_info", key])
    ov.save_model(model, path, compress_to_fp16=False)


def compare(name: str, reference: np.ndarray, probabilities: np.ndarray) -> dict:
    figures = {"max_abs_diff": float(np.abs(reference - probabilities).max()),
               "top1_agree": bool((reference.argmax(1) == probabilities.argmax(1)).all())}
    if not figures["top1_agree"] or figures["max_abs_diff"] > TOLERANCE:
        raise ExportError(f"{name} disagrees with torch: max abs difference {figures['max_abs_diff']:.2e} "
                          f"(tolerance {TOLERANCE:g}), top-1 identical: {figures['top1_agree']}")
    return figures


def export_run(run_dir: Path, out_dir: Path | None = None, parity_fields: int = 4, log=print) -> dict:
    start = time.perf_counter()
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    model, info = load_run(run_dir)
    card = model_card(info)
    # Read the parity fields first: a missing file should fail before minutes of export.
    names, raw = read_parity_fields(run_dir, card, parity_fields)
    module = Exported(model).eval()
    with torch.no_grad():
        reference = module(torch.from_numpy(card.normalization.apply(raw)))[0].numpy()

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, xml_path = out_dir / "model.onnx", out_dir / MODEL_XML
    export_onnx(module, card, onnx_path)
    log(f"onnx: {onnx_path} ({onnx_path.stat().st_size / 1e6:.0f} MB, opset {OPSET}) "
        f"after {time.perf_counter() - start:.1f} s")

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probs = session.run([PROBABILITIES], {INPUT: card.normalization.apply(raw)})[0]
    parity = {"fields": names, "tolerance": TOLERANCE, "onnxruntime": compare("ONNX Runtime", reference, onnx_probs)}
    log(f"parity onnxruntime: max abs diff {parity['onnxruntime']['max_abs_diff']:.2e} on {len(names)} fields, top-1 identical")

    export_openvino(onnx_path, card, xml_path)
    log(f"openvino: {xml_path} (uint16 input, normalisation in the graph)")
    ov_probs, _ = Classifier(xml_path, precision="f32").predict(raw)  # also checks the card reads back
    parity["openvino"] = compare("OpenVINO", reference, ov_probs)
    log(f"parity openvino: max abs diff {parity['openvino']['max_abs_diff']:.2e} on {len(names)} fields, top-1 identical")

    write_atomically(out_dir / "parity.json", lambda tmp: tmp.write_text(json.dumps(parity, indent=2)))
    return {"onnx": str(onnx_path), "xml": str(xml_path), "parity": parity,
            "seconds": round(time.perf_counter() - start, 2)}

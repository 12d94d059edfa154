"""The OpenVINO IR the appliance runs: raw uint16 pixels in, the model card in rt_info."""

from __future__ import annotations

import tempfile
from pathlib import Path

import openvino as ov

from appliance.ir_preprocessing import raw_input
from appliance.model_card import WEIGHTS_FILE_SHA256, ModelCard, file_sha256
from export import ExportError


def raw_input_model(onnx_path: Path, card: ModelCard) -> ov.Model:
    """The ONNX network taking raw uint16 pixels, normalised as the card says (appliance/ir_preprocessing.py)."""
    return raw_input(ov.convert_model(onnx_path), card.normalization)


def save_with_card(model: ov.Model, card: ModelCard, path: Path, extra: dict[str, str] | None = None) -> None:
    """The card (and any extra entries) as rt_info ["model_info", key], and the SHA-256 of the weights
    file (model.bin) that the runtime verifies before compiling; weights kept in f32.

    The weights file is written once beside the final one to learn its hash (it does not depend on
    rt_info), then the model with the hash; the final file is checked to be the one hashed."""
    for key, value in {**card.to_metadata(), **(extra or {})}.items():
        model.set_rt_info(value, ["model_info", key])
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".hashing-") as scratch:
        ov.save_model(model, Path(scratch) / path.name, compress_to_fp16=False)
        digest = file_sha256((Path(scratch) / path.name).with_suffix(".bin"))
    model.set_rt_info(digest, ["model_info", WEIGHTS_FILE_SHA256])
    ov.save_model(model, path, compress_to_fp16=False)
    if file_sha256(path.with_suffix(".bin")) != digest:
        raise ExportError(f"{path.with_suffix('.bin')}: written differently twice; its SHA-256 cannot be recorded")

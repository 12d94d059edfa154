"""The OpenVINO IR the appliance runs: raw uint16 pixels in, the model card in rt_info."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from appliance.ir_preprocessing import raw_input
from appliance.model_card import ModelCard


def raw_input_model(onnx_path: Path, card: ModelCard) -> ov.Model:
    """The ONNX network taking raw uint16 pixels, normalised as the card says (appliance/ir_preprocessing.py)."""
    return raw_input(ov.convert_model(onnx_path), card.normalization)


def save_with_card(model: ov.Model, card: ModelCard, path: Path, extra: dict[str, str] | None = None) -> None:
    """The card (and any extra entries) as rt_info ["model_info", key]; weights kept in f32."""
    for key, value in {**card.to_metadata(), **(extra or {})}.items():
        model.set_rt_info(value, ["model_info", key])
    ov.save_model(model, path, compress_to_fp16=False)

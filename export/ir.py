"""The OpenVINO IR the appliance runs: raw uint16 pixels in, the model card in rt_info."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from appliance.model_card import ModelCard

INPUT = "fields"


def raw_input_model(onnx_path: Path, card: ModelCard) -> ov.Model:
    """The ONNX network behind a PrePostProcessor: uint16 in, conversion and normalisation in the graph.

    The pixels go uint16 -> int32 -> float32. With a direct uint16 -> float32 Convert, the CPU
    plugin's low-precision transformations read Convert-Subtract-Multiply as an int8
    dequantisation and fold it into the first FakeQuantize of a quantized model, which oneDNN
    cannot run on uint16 ("CPU plugin does not support u16"). The extra step costs nothing measurable.
    """
    model = ov.convert_model(onnx_path)
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input(INPUT).tensor().set_element_type(ov.Type.u16).set_layout(ov.Layout("NCHW"))
    ppp.input(INPUT).model().set_layout(ov.Layout("NCHW"))
    norm = card.normalization
    (
        ppp.input(INPUT)
        .preprocess()
        .convert_element_type(ov.Type.i32)
        .convert_element_type(ov.Type.f32)
        .mean(list(norm.mean))
        .scale(list(norm.std))
    )
    return ppp.build()


def save_with_card(model: ov.Model, card: ModelCard, path: Path, extra: dict[str, str] | None = None) -> None:
    """The card (and any extra entries) as rt_info ["model_info", key]; weights kept in f32."""
    for key, value in {**card.to_metadata(), **(extra or {})}.items():
        model.set_rt_info(value, ["model_info", key])
    ov.save_model(model, path, compress_to_fp16=False)

"""The exported model on OpenVINO's CPU plugin: raw uint16 fields in, probabilities and embeddings out.

The model card travels in the IR's rt_info; a model without one, or whose card disagrees with
the network's own shapes, is refused before any field is classified.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from appliance.model_card import KEYS, ModelCard, ModelCardError

MODEL_XML = "model.xml"
PROBABILITIES, EMBEDDING = "probabilities", "embedding"
PRECISIONS = {"f32": ov.Type.f32, "bf16": ov.Type.bf16}


def resolve_model(model: Path | str) -> Path:
    """A folder holding model.xml, or the .xml itself."""
    model = Path(model)
    xml = model / MODEL_XML if model.is_dir() else model
    if not xml.is_file():
        raise FileNotFoundError(f"{xml}: no OpenVINO model here (expected a folder with {MODEL_XML} or an .xml file)")
    return xml


def read_card(network: ov.Model, source: str) -> ModelCard:
    meta = {key: network.get_rt_info(["model_info", key]).astype(str)
            for key in KEYS if network.has_rt_info(["model_info", key])}
    return ModelCard.from_metadata(meta, source=source)


def check_card(network: ov.Model, card: ModelCard, source: str) -> None:
    """The card must describe this network: same input shape, one probability per label."""
    names = {name for output in network.outputs for name in output.get_names()}
    if not {PROBABILITIES, EMBEDDING} <= names:
        raise ModelCardError(f"{source}: outputs {sorted(names)}, expected {PROBABILITIES} and {EMBEDDING}")
    shape = network.input(0).get_partial_shape()
    expected = (len(card.channels), *card.size)
    if shape.rank.get_length() != 4 or any(shape[i + 1] != d for i, d in enumerate(expected)):
        raise ModelCardError(f"{source}: network input is {shape}, the card says (N, {', '.join(map(str, expected))})")
    classes = network.output(PROBABILITIES).get_partial_shape()[-1]
    if classes != len(card.labels):
        raise ModelCardError(f"{source}: network gives {classes} probabilities, the card has {len(card.labels)} labels")


class Classifier:
    def __init__(self, model: Path | str, precision: str = "f32", threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.xml = resolve_model(model)
        core = ov.Core()
        network = core.read_model(self.xml)
        self.card = read_card(network, str(self.xml))
        check_card(network, self.card, str(self.xml))
        # Threads this process may use (cgroup/affinity), not the host's core count.
        self.threads = threads or len(os.sched_getaffinity(0))
        self._compiled = core.compile_model(network, "CPU", {
            hints.inference_precision: PRECISIONS[precision],
            props.inference_num_threads: self.threads,
        })
        self._request = self._compiled.create_infer_request()
        # An IR without PrePostProcessor normalisation takes float32 normalised fields.
        self._takes_raw = network.input(0).get_element_type() == ov.Type.u16

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    @property
    def size(self) -> tuple[int, int]:
        return self.card.size

    @property
    def precision(self) -> str:
        """The precision the CPU plugin actually runs: bf16 falls back to f32 without hardware support."""
        return self._compiled.get_property(hints.inference_precision).get_type_name()

    def predict(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint16 (N, channels, H, W) -> probabilities (N, classes), embeddings (N, 512), float32."""
        expected = (len(self.card.channels), *self.size)
        if raw.ndim != 4 or raw.shape[1:] != expected or raw.dtype != np.uint16:
            raise ValueError(f"expected uint16 fields of shape (N, {', '.join(map(str, expected))}), "
                             f"got {raw.dtype} {raw.shape}")
        fields = raw if self._takes_raw else self.card.normalization.apply(raw)
        result = self._request.infer({0: np.ascontiguousarray(fields)})
        return (np.asarray(result[self._compiled.output(PROBABILITIES)], dtype=np.float32),
                np.asarray(result[self._compiled.output(EMBEDDING)], dtype=np.float32))

"""A tiny model for the runtime's tests, built with OpenVINO's own graph API: no torch, no export.

It is what `mcnn-appliance export` writes (export/ir.py), in miniature:
    the network    input `fields`, normalised float32 (N, 3, 128, 128), N dynamic; a 5x5 convolution,
                   max-pooling and two matmuls; outputs `probabilities` (softmax over the 3 LABELS)
                   and `embedding` (512 features after a ReLU, as the M-CNN's penultimate layer)
    the IR         the same network behind the export's preprocessing (appliance/ir_preprocessing.py):
                   raw uint16 pixels in, uint16 -> int32 -> float32, (x - mean) / std in the graph
    the card       rt_info ["model_info", key], weights kept in f32
quantized=True makes it look as NNCF's model-int8.xml does: FakeQuantize (256 levels) on the
inputs of the convolution and the matmuls, weights stored as int8 with a per-channel scale
(Constant i8 -> Convert -> Multiply): what makes appliance.inference.is_quantized call it an
INT8 model and the CPU plugin run it in int8. tests/export/test_tiny_ir.py holds both against
a real export, so the runtime's tests keep testing what the export writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from appliance.embedding_reference import EmbeddingReference
from appliance.inference import EMBEDDING, MODEL_INT8_XML, MODEL_XML, PROBABILITIES
from appliance.ir_preprocessing import INPUT, raw_input
from appliance.model_card import ModelCard
from appliance.normalization import Normalization
from tests.conftest import CHANNELS, LABELS, MEAN, SIZE, STD, random_channel

WIDTH, KERNEL, STRIDE, POOL = 8, 5, 4, 4  # 128x128 -> conv 32x32 -> pool 8x8: 8 x 8 x 8 = 512 features
HIDDEN = 512  # the embedding's length, as the M-CNN's


def weights(seed: int) -> dict[str, np.ndarray]:
    """Xavier-uniform weights and small biases, the same for the same seed."""
    rng = np.random.default_rng(seed)

    def xavier(shape, fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    flat = WIDTH * (SIZE[0] // STRIDE // POOL) * (SIZE[1] // STRIDE // POOL)
    return {
        "conv": xavier((WIDTH, len(CHANNELS), KERNEL, KERNEL), len(CHANNELS) * KERNEL**2, WIDTH * KERNEL**2),
        "conv_bias": rng.uniform(-0.1, 0.1, (1, WIDTH, 1, 1)).astype(np.float32),
        "fuse": xavier((flat, HIDDEN), flat, HIDDEN),
        "fuse_bias": rng.uniform(-0.1, 0.1, (1, HIDDEN)).astype(np.float32),
        "head": xavier((HIDDEN, len(LABELS)), HIDDEN, len(LABELS)),
        "head_bias": rng.uniform(-0.1, 0.1, (1, len(LABELS))).astype(np.float32),
    }


def sha256(tensors: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].tobytes())
    return digest.hexdigest()


def reference(seed: int = 0, fields: int = 12) -> EmbeddingReference:
    """The training embeddings' summary export puts in the card, of random fields (as tests' plates
    are), labelled LABELS in turn."""
    rng = np.random.default_rng(seed + 1)
    raw = np.stack([np.stack([random_channel(rng, c) for c in range(len(CHANNELS))]) for _ in range(fields)])
    compiled = ov.Core().compile_model(network(seed), "CPU")
    embeddings = compiled(Normalization(MEAN, STD).apply(raw))[compiled.output(EMBEDDING)]
    return EmbeddingReference.from_embeddings(embeddings, [LABELS[i % len(LABELS)] for i in range(fields)])


def card(seed: int = 0, precision: str = "f32") -> ModelCard:
    """The card export writes for these weights; the INT8 model's differs only in precision."""
    return ModelCard(
        labels=LABELS,
        channels=CHANNELS,
        input_height=SIZE[0],
        input_width=SIZE[1],
        normalization=Normalization(MEAN, STD),
        run_id=f"tiny-graph-model-{seed}",
        weights_sha256=sha256(weights(seed)),
        precision=precision,
        reference=reference(seed),
    )


QUANTIZATION = {"method": "FakeQuantize by hand (tests/tiny_ir.py)"}  # rt_info, as NNCF's export records its own


def fake_quantize(node, low: float, high: float):
    """An activation's 256-level FakeQuantize, the same input and output range (per tensor)."""
    low_c, high_c = ops.constant(np.float32(low)), ops.constant(np.float32(high))
    return ops.fake_quantize(node, low_c, high_c, low_c, high_c, 256)


def int8_weight(array: np.ndarray, axis: int):
    """Weights as NNCF stores them: int8 values times a float32 scale per output channel (axis)."""
    others = tuple(i for i in range(array.ndim) if i != axis)
    scale = (np.abs(array).max(axis=others, keepdims=True) / 127).astype(np.float32)
    values = np.clip(np.round(array / scale), -127, 127).astype(np.int8)
    return ops.multiply(ops.convert(ops.constant(values), ov.Type.f32), ops.constant(scale))


def network(seed: int = 0, quantized: bool = False) -> ov.Model:
    """The float network: normalised float32 (N, 3, H, W) -> probabilities (N, 3), embedding (N, 512).

    quantized: the convolution's and the matmuls' inputs through FakeQuantize (the normalised
    input asymmetric, the ReLU outputs from 0) and their weights int8, as NNCF's MIXED preset.
    """
    w = weights(seed)

    def activation(node, low, high):
        return fake_quantize(node, low, high) if quantized else node

    def weight(array, axis):
        return int8_weight(array, axis) if quantized else ops.constant(array)

    fields = ops.parameter(ov.PartialShape([-1, len(CHANNELS), *SIZE]), ov.Type.f32, name=INPUT)
    fields.output(0).get_tensor().set_names({INPUT})
    x = ops.convolution(
        activation(fields, -4.0, 4.0),
        weight(w["conv"], 0),
        strides=[STRIDE, STRIDE],
        pads_begin=[KERNEL // 2] * 2,
        pads_end=[KERNEL // 2] * 2,
        dilations=[1, 1],
    )
    x = ops.relu(ops.add(x, ops.constant(w["conv_bias"])))
    x = ops.max_pool(
        x, strides=[POOL, POOL], dilations=[1, 1], pads_begin=[0, 0], pads_end=[0, 0], kernel_shape=[POOL, POOL]
    ).output(0)
    x = ops.reshape(x, ops.constant(np.array([0, -1], np.int64)), special_zero=True)  # (N, 512)
    x = ops.matmul(activation(x, 0.0, 4.0), weight(w["fuse"], 1), transpose_a=False, transpose_b=False)
    embedding = ops.relu(ops.add(x, ops.constant(w["fuse_bias"])))
    logits = ops.matmul(activation(embedding, 0.0, 4.0), weight(w["head"], 1), transpose_a=False, transpose_b=False)
    probabilities = ops.softmax(ops.add(logits, ops.constant(w["head_bias"])), axis=1)
    results = []
    for node, name in ((probabilities, PROBABILITIES), (embedding, EMBEDDING)):
        node.output(0).get_tensor().set_names({name})
        results.append(ops.result(node))
    return ov.Model(results, [fields], "tiny-mcnn")


def save(model: ov.Model, path: Path, model_card: ModelCard | None, extra: dict[str, str] | None = None) -> Path:
    """export/ir.py's save_with_card: the card (and extra entries) as rt_info ["model_info", key],
    weights as they are (f32, or int8 where quantized); without a card, none."""
    for key, value in ({**model_card.to_metadata(), **(extra or {})} if model_card else {}).items():
        model.set_rt_info(value, ["model_info", key])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, path, compress_to_fp16=False)
    return Path(path)


def write_model(folder: Path, seed: int = 0) -> Path:
    """folder/model.xml: the float IR taking raw uint16 fields, with its card, as export writes it."""
    the_card = card(seed)
    return save(raw_input(network(seed), the_card.normalization), Path(folder) / MODEL_XML, the_card)


def write_int8_model(folder: Path, seed: int = 0, gate: dict | None = None) -> Path:
    """folder/model-int8.xml: the same weights behind FakeQuantize ops, card precision int8; gate is the
    accuracy gate's record as export/quantize.py writes it (None: an INT8 model exported without one)."""
    the_card = card(seed, "int8")
    extra = {"quantization": json.dumps(QUANTIZATION)} | ({"int8_gate": json.dumps(gate)} if gate else {})
    return save(
        raw_input(network(seed, quantized=True), the_card.normalization), Path(folder) / MODEL_INT8_XML, the_card, extra
    )

"""Export of a tiny run: ONNX with the card, IR with the card and uint16 input, parity on real fields."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
import torch

from appliance.embedding_reference import KEY as REFERENCE_KEY
from appliance.embedding_reference import EmbeddingReference
from appliance.fieldsets import from_split, read_raw
from appliance.inference import Classifier
from appliance.model_card import WEIGHTS_FILE_SHA256, file_sha256
from export.exporter import ExportError, export_run
from tests.conftest import MEAN, STD
from training.predict import load_predictor
from training.run import load_run, model_card


def test_onnx_carries_the_card_and_is_self_contained(tiny_run, tiny_export):
    path = Path(tiny_export["onnx"])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    reference = props.pop(REFERENCE_KEY)  # the training embeddings' summary: test_card_carries_the_training_reference
    assert props == model_card(load_run(tiny_run)[1]).to_metadata()
    assert EmbeddingReference.from_metadata(reference).fields == 2
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["fields"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "embedding"]
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith("model")) == [
        "model.bin",
        "model.onnx",
        "model.xml",
    ]  # no external data file


def test_ir_card_round_trips_and_takes_uint16(tiny_run, tiny_model):
    classifier = Classifier(tiny_model, "f32")
    assert classifier.warning is None  # the weights file's SHA-256 is recorded, and verified
    recorded = ov.Core().read_model(tiny_model / "model.xml").get_rt_info(["model_info", WEIGHTS_FILE_SHA256])
    assert recorded.astype(str) == file_sha256(tiny_model / "model.bin")
    assert not [p for p in tiny_model.iterdir() if p.name.startswith(".hashing-")]
    assert classifier.card == model_card(load_run(tiny_run)[1])
    card = classifier.card.to_metadata()
    assert card.pop(REFERENCE_KEY) and card == model_card(load_run(tiny_run)[1]).to_metadata()
    assert classifier.size == (128, 128) and classifier.precision == "f32"


def test_card_carries_the_training_reference(tiny_run, tiny_model):
    """Centroids and threshold worked out here from torch's embeddings of the run's training fields."""
    reference = Classifier(tiny_model, "f32").card.reference
    train = [f for f in from_split(tiny_run) if f.split == "train"]
    predictor, _ = load_predictor(tiny_run)
    embeddings = predictor.predict(read_raw(train, (128, 128)))[1].astype(np.float64)
    assert reference.fields == len(train) == 2 and set(reference.labels) == {f.moa for f in train}
    for label, centroid in zip(reference.labels, reference.centroids, strict=True):
        rows = [e for e, f in zip(embeddings, train, strict=True) if f.moa == label]
        assert centroid == pytest.approx(np.mean(rows, axis=0), rel=1e-4, abs=1e-5)
    own = [min(np.linalg.norm(e - c) for c in reference.centroids.astype(np.float64)) for e in embeddings]
    assert reference.threshold == pytest.approx(np.percentile(own, 99), rel=1e-4, abs=1e-5)
    # classify's Classify_Distance: a training field lies within the threshold of its own centroid
    assert (Classifier(tiny_model, "f32").card.reference.distances(embeddings) <= reference.threshold + 1e-4).all()


def test_parity_figures(tiny_export, tiny_model):
    parity = json.loads((tiny_model / "parity.json").read_text())
    assert parity == tiny_export["parity"]
    assert len(parity["fields"]) == 3  # the three validation fields
    for runtime in ("onnxruntime", "openvino"):
        assert parity[runtime]["top1_agree"] is True
        assert parity[runtime]["max_abs_diff"] <= 1e-3


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(tiny_run, tiny_model, batch):
    model, _ = load_run(tiny_run)
    raw = np.random.default_rng(batch).integers(0, 4000, (batch, 3, 128, 128), dtype=np.uint16)
    fields = (raw.astype(np.float32) - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[
        :, None, None
    ]
    with torch.no_grad():
        features = model.forward_features(torch.from_numpy(fields))
        expected = torch.softmax(model.forward_head(features), 1).numpy()

    session = ort.InferenceSession(str(tiny_model / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_probs, onnx_emb = session.run(None, {"fields": fields})
    ov_probs, ov_emb = Classifier(tiny_model, "f32").predict(raw)
    assert onnx_probs.shape == ov_probs.shape == (batch, 3)
    assert onnx_emb.shape == ov_emb.shape == (batch, 512)
    np.testing.assert_allclose(onnx_probs, expected, atol=1e-4)
    np.testing.assert_allclose(ov_probs, expected, atol=1e-4)
    np.testing.assert_allclose(ov_emb, features.numpy(), rtol=1e-3, atol=1e-3)


def test_missing_parity_file_is_an_error_naming_it(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    with open(run / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    gone = Path(next(r for r in rows if r["split"] == "val")["path_tubulin"])
    rows = [
        {**r, "path_tubulin": str(tmp_path / gone.name) if r["path_tubulin"] == str(gone) else r["path_tubulin"]}
        for r in rows
    ]
    with open(run / "split.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ExportError, match=gone.name + ".*file not found"):
        export_run(run, log=lambda line: None)
    assert not (run / "export").exists()

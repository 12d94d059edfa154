"""The runtime refuses a model whose card is missing or does not match the network."""

import csv

import numpy as np
import openvino as ov
import pytest

from appliance.classify import classify_plate
from appliance.inference import Classifier
from appliance.ir_preprocessing import raw_input
from appliance.model_card import ModelCardError
from tests import tiny_ir
from tests.conftest import write_plate


def save_copy(tiny_model, folder, edit):
    """Save the tiny IR to `folder` after `edit(model)` changed it."""
    model = ov.Core().read_model(tiny_model / "model.xml")
    edit(model)
    folder.mkdir()
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)
    return folder


def test_refuses_an_ir_without_a_card(tiny_model, tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    tiny_ir.save(raw_input(tiny_ir.network(), Classifier(tiny_model).card.normalization), folder / "model.xml", None)
    with pytest.raises(ModelCardError, match=r"model\.xml: model card incomplete"):
        Classifier(folder)


def test_refuses_a_card_with_the_wrong_input_size(tiny_model, tmp_path):
    folder = save_copy(
        tiny_model, tmp_path / "wrong_size", lambda m: m.set_rt_info("256", ["model_info", "input_height"])
    )
    with pytest.raises(
        ModelCardError, match=r"model\.xml: network input is .*128,128.*the card says \(N, 3, 256, 128\)"
    ):
        Classifier(folder / "model.xml")


def test_refuses_a_card_with_the_wrong_labels(tiny_model, tmp_path):
    folder = save_copy(
        tiny_model, tmp_path / "wrong_labels", lambda m: m.set_rt_info('["a", "b"]', ["model_info", "labels"])
    )
    with pytest.raises(ModelCardError, match="3 probabilities, the card has 2 labels"):
        Classifier(folder)


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.xml"):
        Classifier(tmp_path)


def test_float_ir_is_normalised_by_the_runtime(tiny_model, tmp_path):
    """An IR without preprocessing in the graph gives the same answer as the uint16 one."""
    reference = Classifier(tiny_model)
    folder = tmp_path / "float"
    tiny_ir.save(tiny_ir.network(), folder / "model.xml", reference.card)  # the same weights, float32 input
    assert ov.Core().read_model(folder / "model.xml").input(0).get_element_type() == ov.Type.f32
    raw = np.random.default_rng(0).integers(0, 4000, (2, 3, 128, 128), dtype=np.uint16)
    np.testing.assert_allclose(Classifier(folder, threads=1).predict(raw)[0], reference.predict(raw)[0], atol=1e-5)


def test_predict_checks_its_input(tiny_model):
    classifier = Classifier(tiny_model)
    with pytest.raises(ValueError, match=r"uint16 fields of shape \(N, 3, 128, 128\)"):
        classifier.predict(np.zeros((1, 3, 64, 64), np.uint16))
    with pytest.raises(ValueError, match="precision"):
        Classifier(tiny_model, precision="int4")


def test_int8_needs_the_int8_file(tiny_model):
    with pytest.raises(FileNotFoundError, match=r"model-int8\.xml: no INT8 model here.*--int8"):
        Classifier(tiny_model, precision="int8")


def test_int8_runs_model_int8_and_says_so(int8_model):
    classifier = Classifier(int8_model, precision="int8")
    assert classifier.xml.name == "model-int8.xml"
    assert (classifier.precision, classifier.card.precision) == ("int8", "int8")
    assert Classifier(int8_model, precision="bf16").xml.name == "model.xml"
    raw = np.random.default_rng(1).normal(1000, 300, (3, 3, 128, 128)).clip(0, 65535).astype(np.uint16)
    probabilities, embeddings = classifier.predict(raw)
    assert probabilities.shape == (3, 3) and embeddings.shape == (3, 512)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(probabilities, Classifier(int8_model).predict(raw)[0], atol=0.05)  # the same weights


def test_precision_and_model_must_agree(tiny_model, int8_model):
    with pytest.raises(ModelCardError, match="an int8 model cannot run at precision f32; use --precision int8"):
        Classifier(int8_model / "model-int8.xml", precision="f32")
    with pytest.raises(ModelCardError, match="an f32 model cannot run at precision int8"):
        Classifier(tiny_model / "model.xml", precision="int8")


@pytest.mark.parametrize(
    "source, claim, says",
    [
        ("model-int8.xml", "f32", "the card says precision f32, the network is quantized"),
        ("model.xml", "int8", "the card says precision int8, the network is not quantized"),
        ("model.xml", "fp8", "the card says precision fp8"),
    ],
)
def test_refuses_a_card_lying_about_precision(int8_model, tmp_path, source, claim, says):
    model = ov.Core().read_model(int8_model / source)
    model.set_rt_info(claim, ["model_info", "precision"])
    ov.save_model(model, tmp_path / "model.xml", compress_to_fp16=False)
    with pytest.raises(ModelCardError, match=says):
        Classifier(tmp_path / "model.xml", precision="int8" if claim == "int8" else "f32")


def test_a_plate_classified_in_int8_says_so_in_its_results(int8_model, tmp_path):
    write_plate(tmp_path / "plate", wells=("B02",), sites=(1, 2))
    summary = classify_plate(tmp_path / "plate", Classifier(int8_model, precision="int8"), tmp_path / "out")
    assert summary["precision"] == "int8" and summary["counts"]["classified"] == 2
    with open(tmp_path / "out" / "fields.csv", newline="") as f:
        assert [row["Model_Precision"] for row in csv.DictReader(f)] == ["int8", "int8"]


def test_refuses_an_export_whose_run_was_trained_again(tiny_model, tmp_path):
    """RUN/export whose card names other weights than RUN/run.json: classify stops (exit 2) naming both."""
    import json
    import shutil

    from typer.testing import CliRunner

    from appliance.cli import app

    export = tmp_path / "run" / "export"
    shutil.copytree(tiny_model, export)
    card_hash = Classifier(export).card.weights_sha256  # no run.json yet: the card alone
    (tmp_path / "run" / "run.json").write_text(json.dumps({"weights_sha256": card_hash}))
    assert Classifier(export).card.weights_sha256 == card_hash  # the run's own export
    (tmp_path / "run" / "run.json").write_text(json.dumps({"weights_sha256": "e6a36c30" + "0" * 56}))
    stale = rf"weights {card_hash[:12]}\.\.\., but .*run\.json now holds weights e6a36c30"
    with pytest.raises(ModelCardError, match=stale):
        Classifier(export)
    plate = tmp_path / "plate"
    write_plate(plate, ["B02"], (1,))
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(export), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "export it again: mcnn-appliance export" in result.output and not (tmp_path / "out").exists()

"""Models the runtime must refuse or warn about (issue 18): an altered weights file, an export without
the weights file's hash, labels that give one result column, a folder without model.bin."""

import json
import shutil

import openvino as ov
import pytest
from typer.testing import CliRunner

from appliance.cli import app
from appliance.inference import Classifier
from appliance.ir_preprocessing import raw_input
from appliance.model_card import WEIGHTS_FILE_SHA256, ModelCardError, file_sha256
from tests import tiny_ir
from tests.conftest import write_plate


@pytest.fixture
def plate(tmp_path):
    write_plate(tmp_path / "P1", wells=("B02",), sites=(1,))
    return tmp_path / "P1"


def test_the_export_records_the_weights_file_hash_and_it_is_verified(tiny_model):
    network = ov.Core().read_model(tiny_model / "model.xml")
    recorded = network.get_rt_info(["model_info", WEIGHTS_FILE_SHA256]).astype(str)
    assert recorded == file_sha256(tiny_model / "model.bin")
    assert Classifier(tiny_model).warning is None


def test_a_weights_file_with_three_bytes_flipped_is_refused_naming_it(tmp_path, tiny_model, plate):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    data = bytearray((model / "model.bin").read_bytes())
    for offset in (100, 2000, len(data) - 7):
        data[offset] ^= 0xFF
    (model / "model.bin").write_bytes(data)
    with pytest.raises(ModelCardError, match=r"model\.bin: SHA-256 [0-9a-f]{64} is not the [0-9a-f]{64}"):
        Classifier(model)
    for command in (["classify", str(plate)], ["watch", str(plate.parent)]):
        result = CliRunner().invoke(app, [*command, "--model", str(model), "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert f"{model / 'model.bin'}: SHA-256" in result.output and "refused" in result.output
        assert not (tmp_path / "out" / "P1").exists()


def test_an_export_without_the_hash_warns_once_and_is_used(tmp_path, plate):
    model, the_card = tmp_path / "old_export", tiny_ir.card()
    network = raw_input(tiny_ir.network(), the_card.normalization)
    for key, value in the_card.to_metadata().items():  # the card as exports before this one wrote it
        network.set_rt_info(value, ["model_info", key])
    model.mkdir()
    ov.save_model(network, model / "model.xml", compress_to_fp16=False)
    assert "exported without the SHA-256 of model.bin" in Classifier(model).warning
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(model), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.count("exported without the SHA-256 of model.bin") == 1
    assert "1 fields classified" in result.output


@pytest.mark.parametrize("labels", [["A_b", "A-b", "C"], ["DMSO", "A b", "A  b"]])
def test_labels_that_give_one_result_column_are_refused_naming_both(tmp_path, tiny_model, labels):
    network = ov.Core().read_model(tiny_model / "model.xml")
    network.set_rt_info(json.dumps(labels), ["model_info", "labels"])
    (tmp_path / "model").mkdir()
    ov.save_model(network, tmp_path / "model" / "model.xml", compress_to_fp16=False)
    a, b = (label for label in labels if label.startswith("A"))
    with pytest.raises(
        ModelCardError, match=f"class labels {a!r} and {b!r} both give the result column Probability_A_b"
    ):
        Classifier(tmp_path / "model")


def test_a_model_folder_without_model_bin_is_refused_naming_it(tmp_path, tiny_model, plate):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_model / "model.xml", model / "model.xml")
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(model)])
    assert result.exit_code == 2
    assert f"{model / 'model.bin'}: no such file; model.xml needs its weights file beside it" in result.output
    (model / "model.bin").write_bytes(b"\0" * 10)  # there, but not an IR's weights: OpenVINO's error, with our path
    with pytest.raises(ModelCardError, match=r"model\.(xml|bin)"):
        Classifier(model)

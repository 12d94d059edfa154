"""INT8 export of a tiny run: the card travels, the gate keeps or refuses, calibration is stratified."""

import csv
import json
import shutil

import numpy as np
import openvino as ov
import pytest
from typer.testing import CliRunner

from appliance.cli import app
from appliance.fieldsets import from_split, read_raw
from appliance.inference import Classifier
from appliance.model_card import ModelCard
from appliance.precision import choose_precision
from appliance.synth import write_dataset
from export import ExportError
from export.quantize import Int8Options, choose_fields, quantize_export
from tests.conftest import LABELS, SIZE


def copy_export(tiny_model, folder):
    shutil.copytree(tiny_model, folder)
    return folder


def test_int8_ir_carries_the_card_and_how_it_was_quantized(int8_run):
    run, summary = int8_run
    export = run / "export"
    network = ov.Core().read_model(export / "model-int8.xml")

    def meta(key):
        return network.get_rt_info(["model_info", key]).astype(str)

    float_card = Classifier(export, "f32").card
    card = ModelCard.from_metadata({k: meta(k) for k in float_card.to_metadata()})
    assert card.precision == "int8" and float_card.precision == "f32"
    assert card.to_metadata() == {**float_card.to_metadata(), "precision": "int8"}
    how = json.loads(meta("quantization"))
    assert how["method"] == "NNCF post-training quantization" and how["preset"] == "mixed"
    assert how["calibration"]["fields"] == 2  # the tiny run's two training fields
    assert any(op.get_type_name() == "FakeQuantize" for op in network.get_ops())
    fed_by = [
        {op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())}
        for op in network.get_ops()
        if op.get_type_name() == "MatMul"
    ]  # the linear layers stay float (quantize.FLOAT_LAYERS): no FakeQuantize in front of them
    assert fed_by and not any("FakeQuantize" in inputs for inputs in fed_by)
    gate = json.loads(meta("int8_gate"))  # what --precision auto reads (appliance/precision.py)
    assert gate["passed"] and gate["fields"] >= 1 and "drop_points" in gate and "max_drop" in gate
    assert network.input(0).get_element_type() == ov.Type.u16  # raw pixels, normalisation in the graph
    assert summary["int8_xml"] == str(export / "model-int8.xml")
    assert sorted(p.name for p in export.iterdir()) == [
        "model-int8.bin",
        "model-int8.xml",
        "model.bin",
        "model.onnx",
        "model.xml",
        "parity.json",
    ]


def test_parity_json_holds_the_gate(int8_run):
    run, summary = int8_run
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity == summary["parity"] and {"onnxruntime", "openvino"} <= set(parity)
    section = parity["quantization"]
    gate = section["gate"]
    assert section["kept"] is True and section["forced"] is False and section["file"] == "model-int8.xml"
    assert gate["fields"] == 3 and gate["source"].endswith("split.csv val rows")
    assert gate["drop_points"] == pytest.approx(gate["f32_accuracy"] - gate["int8_accuracy"], abs=0.02)
    assert gate["max_drop"] == 100.0
    assert (section["calibration"]["requested"], gate["requested"]) == (128, 130)
    assert [w.split(",")[0] for w in section["warnings"]] == [  # the tiny run has 2 train and 3 val fields
        "int8 calibrates on 2 fields",
        "int8 gates on 3 fields",
    ]
    # The gate's figures are the two models' own on the val rows, computed here without export/quantize.py.
    val = [f for f in from_split(run) if f.split == "val"]
    raw = read_raw(val, SIZE)
    f32, int8 = (Classifier(run / "export", precision).predict(raw)[0].argmax(1) for precision in ("f32", "int8"))
    truth = np.array([LABELS.index(f.moa) for f in val])

    def percent(hits):
        return round(100 * float(np.mean(hits)), 2)

    assert (gate["f32_accuracy"], gate["int8_accuracy"], gate["top1_agreement"]) == (
        percent(f32 == truth),
        percent(int8 == truth),
        percent(f32 == int8),
    )


def test_int8_classifier_follows_the_float_model(int8_run):
    run, _ = int8_run
    raw = read_raw([f for f in from_split(run) if f.split == "val"], (128, 128))
    int8 = Classifier(run / "export", precision="int8")
    assert int8.xml.name == "model-int8.xml" and int8.precision == "int8"
    probabilities, embeddings = int8.predict(raw)
    assert probabilities.shape == (3, 3) and embeddings.shape == (3, 512)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(probabilities, Classifier(run / "export").predict(raw)[0], atol=0.05)


@pytest.mark.parametrize("force", [False, True])
def test_gate_with_an_impossible_max_drop(tiny_run, tiny_model, tmp_path, force):
    """No INT8 model can lose less than -100 points: refused, unless forced."""
    export = copy_export(tiny_model, tmp_path / "export")
    section = quantize_export(tiny_run, export, Int8Options(max_drop=-101, force=force), log=lambda line: None)
    assert section["kept"] is force and section["forced"] is force
    names = sorted(p.name for p in export.iterdir())
    assert names == sorted(
        ["model.bin", "model.onnx", "model.xml", "parity.json"]
        + (["model-int8.bin", "model-int8.xml"] if force else [])
    )
    assert Classifier(export, "f32").card.precision == "f32"  # the float model is untouched
    if force:  # a forced INT8 model is never what --precision auto picks
        assert choose_precision(export).reason.endswith("model-int8.xml not used: it was forced past its accuracy gate")


def write_split(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_without_val_rows_the_gate_gets_the_training_rows_calibration_left(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(tiny_run / "split.csv", newline="") as f:
        rows = [{**r, "split": "train"} for r in csv.DictReader(f)]
    write_split(run / "split.csv", rows)
    calib_info, calib, gate_info, gate = choose_fields(run, Int8Options(calibration_fields=128, gate_fields=130))
    assert (len(calib), len(gate)) == (2, 3)  # half of the five training rows calibrate
    assert not {f.paths for f in calib} & {f.paths for f in gate}
    assert {f.moa for f in calib} == {LABELS[0], LABELS[1]}  # one field of each of two classes
    assert gate_info["source"].endswith("train rows not used for calibration")


def test_calibration_from_a_folder_is_stratified(tiny_run, tmp_path):
    data = tmp_path / "data"
    write_dataset(data, plates=1, fields_per_class=2, size=(128, 128), seed=1)  # 13 classes x 2 fields
    calib_info, calib, gate_info, gate = choose_fields(
        tiny_run, Int8Options(data, calibration_fields=13, gate_fields=130)
    )
    assert len(calib) == 13 and len({f.moa for f in calib}) == 13  # one of every class first
    assert calib_info["source"] == str(data)
    assert sorted(f.name for f in gate) == sorted(f.name for f in from_split(tiny_run) if f.split == "val")


def test_cli_refuses_int8_that_fails_the_gate(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    result = CliRunner().invoke(app, ["export", str(run), "--int8", "--max-drop=-101"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "INT8 rejected" in said and "only the float model was kept" in said
    assert (run / "export" / "model.xml").is_file() and not (run / "export" / "model-int8.xml").exists()
    section = json.loads((run / "export" / "parity.json").read_text())["quantization"]
    assert section["kept"] is False and section["file"] is None and section["gate"]["max_drop"] == -101


def test_a_missing_gate_field_is_an_error_naming_it(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(tiny_run / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[-1]["path_actin"] = str(tmp_path / "gone.tif")  # a val row: the gate's
    write_split(run / "split.csv", rows)
    with pytest.raises(ExportError, match=r"gate field .*gone\.tif .*val rows\): file not found"):
        choose_fields(run, Int8Options(calibration_fields=128, gate_fields=130))


def test_a_small_run_is_told_how_many_fields_it_calibrated_and_gated_on():
    """The issue's run: 13 gate fields make one field 7.7 points, more than the 1-point allowed drop."""
    from export.quantize import field_count_warnings

    calib = {"fields": 6, "requested": 128, "source": "run/split.csv train rows"}
    gate = {"fields": 13, "requested": 130, "source": "run/split.csv val rows"}
    fewer_calib, fewer_gate, coarse = field_count_warnings(calib, gate, max_drop=1.0)
    assert fewer_calib.startswith("int8 calibrates on 6 fields, fewer than the 128 asked for")
    assert fewer_gate.startswith("int8 gates on 13 fields, fewer than the 130 asked for")
    assert "one field 7.7 points, more than the allowed drop of 1" in coarse and "100 or more" in coarse
    plenty = {"fields": 130, "requested": 130, "source": "val"}
    assert field_count_warnings({**calib, "fields": 128}, plenty, max_drop=1.0) == []
    enough = {**calib, "fields": 128}
    assert field_count_warnings(enough, {**plenty, "fields": 101, "requested": 101}, 1.0) == []  # 0.99 points
    assert len(field_count_warnings(enough, {**plenty, "fields": 99, "requested": 99}, 1.0)) == 1  # 1.01

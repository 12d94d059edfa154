"""The runtime's tests classify with an IR built by hand (tests/tiny_ir.py), without torch. Held
here against a real export, float and INT8, so that they keep testing what the export writes."""

import openvino as ov
import pytest

from appliance.inference import MODEL_INT8_XML, MODEL_XML, Classifier, is_quantized, read_card
from appliance.model_card import KEYS, OPTIONAL_KEYS, WEIGHTS_FILE_SHA256
from tests import tiny_ir

# What differs between two models of the same labels, channels, size and normalisation.
WEIGHTS_KEYS = {"run_id", "weights_sha256", "embedding_reference", WEIGHTS_FILE_SHA256}
PREPROCESSING = ("Convert", "Convert", "Subtract", "Multiply")  # u16 -> i32 -> f32, mean, 1 / std


def signature(xml) -> dict:
    """What the runtime relies on: input, outputs, the preprocessing the PrePostProcessor put in
    the graph, the model card (but the weights' identity), and how the network is quantized."""
    network = ov.Core().read_model(xml)
    parameter = network.input(0)
    node, steps = network.get_parameters()[0], []
    while True:  # from the raw input along the preprocessing ops, to the network itself
        consumers = {target.get_node() for target in node.output(0).get_target_inputs()}
        kinds = sorted({consumer.get_type_name() for consumer in consumers})
        if len(consumers) != 1 or kinds[0] not in PREPROCESSING:
            break
        node = consumers.pop()
        steps.append(kinds[0])
    converts = [
        op.get_output_element_type(0).get_type_name()
        for op in network.get_ordered_ops()
        if op.get_type_name() == "Convert" and op.input_value(0).get_element_type() == ov.Type.u16
    ]
    card = read_card(network, str(xml))
    quantizers = [op for op in network.get_ops() if op.get_type_name() == "FakeQuantize"]
    return {
        "input": (parameter.get_any_name(), parameter.get_element_type(), str(parameter.get_partial_shape())),
        "outputs": [(sorted(o.get_names()), o.get_element_type(), str(o.get_partial_shape())) for o in network.outputs],
        "preprocessing": steps,
        "normalised_input_quantized": kinds == ["FakeQuantize"],
        "first_convert": converts,
        "card": {k: v for k, v in card.to_metadata().items() if k not in WEIGHTS_KEYS},
        "rt_info": sorted(network.get_rt_info()["model_info"].keys()),
        "quantized": is_quantized(network),
        "fake_quantize_levels": sorted({int(op.get_attributes()["levels"]) for op in quantizers}),
        "int8_weights": any(
            op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8 for op in network.get_ops()
        ),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_ir")
    tiny_ir.write_model(folder)
    tiny_ir.write_int8_model(folder, gate={"fields": 3, "drop_points": 0.0, "max_drop": 1.0, "passed": True})
    return folder


def test_the_float_ir_is_what_export_writes(built, tiny_model):
    ours, exported = signature(built / MODEL_XML), signature(tiny_model / MODEL_XML)
    assert ours == exported
    assert ours["input"] == ("fields", ov.Type.u16, "[?,3,128,128]") and ours["first_convert"] == ["i32"]
    assert ours["preprocessing"] == list(PREPROCESSING) and not ours["quantized"]
    assert set(ours["rt_info"]) == {*KEYS, *OPTIONAL_KEYS, WEIGHTS_FILE_SHA256}


def test_the_int8_ir_is_what_export_int8_writes(built, int8_run):
    run, _ = int8_run
    ours, exported = signature(built / MODEL_INT8_XML), signature(run / "export" / MODEL_INT8_XML)
    assert ours == exported
    assert ours["normalised_input_quantized"] and ours["quantized"] and ours["int8_weights"]
    assert ours["card"]["precision"] == "int8" and "quantization" in ours["rt_info"]


def test_both_run_as_the_runtime_runs_an_export(built):
    f32, int8 = Classifier(built, "f32"), Classifier(built, precision="int8")
    assert (f32.precision, f32.card.precision, int8.precision, int8.card.precision) == ("f32", "f32", "int8", "int8")
    assert f32.card.weights_sha256 == int8.card.weights_sha256 == tiny_ir.card().weights_sha256

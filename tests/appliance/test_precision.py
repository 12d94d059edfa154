"""`--precision auto`: int8 only behind a passed gate, bf16 only where the CPU computes it natively."""

from __future__ import annotations

import shutil

import pytest

from appliance.inference import Classifier
from appliance.precision import choose_precision, cpu_flags
from tests.tiny_ir import write_int8_model

ZEN5 = {"avx512f", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS = ZEN5 | {"amx_bf16", "amx_int8", "amx_tile"}
OLD_XEON = {"avx512f", "avx512_vnni"}
PASSED = {"fields": 26, "drop_points": 0.0, "max_drop": 1.0, "passed": True}


@pytest.fixture
def gated_int8(tiny_model, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(tiny_model, folder)
    write_int8_model(folder, gate=PASSED)
    return folder


@pytest.mark.parametrize(("flags", "expected"), [(ZEN5, "bf16"), (SAPPHIRE_RAPIDS, "bf16"), (OLD_XEON, "f32")])
def test_float_export_runs_bf16_only_where_native(tiny_model, flags, expected):
    choice = choose_precision(tiny_model, flags=flags)
    assert choice.precision == expected
    assert ("natively" in choice.reason) == (expected == "bf16")


@pytest.mark.parametrize("flags", [ZEN5, SAPPHIRE_RAPIDS, OLD_XEON])
def test_int8_that_passed_its_gate_wins_on_every_cpu(gated_int8, flags):
    choice = choose_precision(gated_int8, flags=flags)
    assert choice.precision == "int8"
    assert "passed the export's accuracy gate" in choice.reason and "26 held-out fields" in choice.reason


def test_int8_without_a_passed_gate_is_not_chosen(tiny_model, tmp_path):
    forced, ungated = tmp_path / "forced", tmp_path / "ungated"
    for folder, gate in ((forced, {**PASSED, "passed": False, "drop_points": 4.0}), (ungated, None)):
        shutil.copytree(tiny_model, folder)
        write_int8_model(folder, gate=gate)
    reason = choose_precision(forced, flags=ZEN5).reason
    assert reason.endswith("model-int8.xml not used: it was forced past its accuracy gate")
    assert choose_precision(ungated, flags=OLD_XEON).precision == "f32"


def test_given_precision_is_kept(gated_int8):
    assert choose_precision(gated_int8, "f32", flags=SAPPHIRE_RAPIDS).precision == "f32"


def test_classifier_defaults_to_auto_and_says_why(gated_int8):
    classifier = Classifier(gated_int8)
    assert classifier.xml.name == "model-int8.xml" and classifier.precision == "int8"
    assert classifier.choice.reason.startswith("model-int8.xml passed")


def test_cpu_flags_read_from_proc_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "absent") == set()


def test_compiled_model_is_cached_and_the_cache_can_be_turned_off(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MCNN_MODEL_CACHE", str(cache))
    Classifier(tiny_model, "f32")
    blobs = list(cache.glob("*.blob"))
    assert blobs, "OpenVINO wrote no compiled model into MCNN_MODEL_CACHE"
    monkeypatch.setenv("MCNN_MODEL_CACHE", "off")
    shutil.rmtree(cache)
    Classifier(tiny_model, "f32")
    assert not cache.exists()


def test_an_unwritable_cache_costs_a_compile_not_the_run(tiny_model, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MCNN_MODEL_CACHE", str(blocker / "cache"))  # a folder under a file: mkdir fails
    assert Classifier(tiny_model, "f32").precision == "f32"

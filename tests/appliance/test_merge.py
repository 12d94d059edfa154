"""Shards classified separately merge into the results of one whole run."""

import csv
import json

import numpy as np
import openvino as ov
import pytest
from typer.testing import CliRunner

from appliance.classify import classify_plate
from appliance.cli import app
from appliance.inference import Classifier
from appliance.merge import MergeError, merge_results
from appliance.report import write_report
from appliance.result_files import read_results
from tests.appliance.test_result_files import RESULT_SET, renamed_into_place
from tests.conftest import write_plate


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def shards(tiny_model, tmp_path_factory):
    """A plate classified whole and as 3 shards (one site truncated, so a failure too)."""
    root = tmp_path_factory.mktemp("merge")
    written = write_plate(root / "plate", wells=("B02", "B03", "C02", "C03"), sites=(1, 2, 3))
    written[("C03", 2)]["Actin"].write_bytes(b"II*\0")
    classifier = Classifier(tiny_model)
    classify_plate(root / "plate", classifier, root / "whole", embeddings=True)
    for index in range(3):
        classify_plate(root / "plate", classifier, root / f"shard{index}", shard=(index, 3), embeddings=True)
    return root


def test_merged_shards_equal_the_whole_run(shards, tmp_path):
    summary = merge_results([shards / f"shard{i}" for i in (2, 0, 1)], tmp_path / "merged")
    assert summary["missing_shards"] == [] and not summary["interrupted"]
    assert summary["counts"] == {"fields": 12, "classified": 11, "failed": 1, "skipped_done": 0}
    for name in ("fields.csv", "wells.csv", "failures.csv"):
        assert read_csv(tmp_path / "merged" / name) == read_csv(shards / "whole" / name), name
    merged, whole = read_results(tmp_path / "merged"), read_results(shards / "whole")
    np.testing.assert_allclose(merged.embeddings, whole.embeddings, atol=1e-6)  # each on its own field
    assert json.loads((tmp_path / "merged" / "summary.json").read_text()) == summary
    assert summary["merged_from"][0].endswith("shard2") and summary["shard"] == "merged 3 of 3"


def test_a_missing_shard_is_reported(shards, tmp_path):
    summary = merge_results([shards / "shard0", shards / "shard2"], tmp_path / "merged")
    assert summary["missing_shards"] == ["1/3"] and summary["interrupted"]
    result = CliRunner().invoke(
        app, ["merge", str(shards / "shard0"), str(shards / "shard2"), "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 1 and "missing shards: 1/3" in result.output


def test_overlapping_shards_are_refused(shards, tmp_path):
    with pytest.raises(MergeError, match="both shard 0/3: they overlap"):
        merge_results([shards / "shard0", shards / "shard1", shards / "shard0"], tmp_path / "merged")
    with pytest.raises(MergeError, match="split differently"):
        merge_results([shards / "shard0", shards / "whole"], tmp_path / "merged")
    result = CliRunner().invoke(
        app, ["merge", str(shards / "shard0"), str(shards / "shard0"), "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 2 and "overlap" in result.output


def test_shards_of_another_model_are_refused(shards, tiny_model, tmp_path):
    network = ov.Core().read_model(tiny_model / "model.xml")
    network.set_rt_info("f" * 64, ["model_info", "weights_sha256"])
    ov.save_model(network, tmp_path / "other.xml", compress_to_fp16=False)
    classify_plate(
        shards / "plate", Classifier(tmp_path / "other.xml"), tmp_path / "other1", shard=(1, 3), embeddings=True
    )
    with pytest.raises(MergeError, match="other1: model weights_sha256 'f+', but .*shard0 has"):
        merge_results([shards / "shard0", tmp_path / "other1", shards / "shard2"], tmp_path / "merged")
    with pytest.raises(MergeError, match="summary.json: missing.*not a classify results folder to merge"):
        merge_results([shards / "shard0", tmp_path], tmp_path / "merged")


def test_a_merge_writes_each_file_once_and_its_report_is_rebuilt_from_the_folder(shards, tmp_path, monkeypatch):
    replaced = renamed_into_place(monkeypatch, tmp_path / "merged")
    merge_results([shards / f"shard{i}" for i in range(3)], tmp_path / "merged")
    assert sorted(replaced) == sorted([*RESULT_SET, "gallery.npz"]) and replaced[-1] == "summary.json"
    written = (tmp_path / "merged" / "report.html").read_text()
    write_report(read_results(tmp_path / "merged"))
    assert (tmp_path / "merged" / "report.html").read_text() == written and "merged 3 of 3" in written

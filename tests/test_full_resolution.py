"""One smoke test of the whole path at BBBC021's full resolution, 1024x1280 (about 2 minutes).

Every other test uses a small input size; this one proves the real contract: full-size
16-bit fields, the 42.6 M-parameter M-CNN, its export, and OpenVINO classification.
"""

import csv
import json

import pytest
from rich.console import Console

from appliance.classify import classify_plate
from appliance.layouts.bbbc021 import load_fields
from appliance.synth import write_dataset
from export.exporter import export_run
from training.train import TrainConfig, train


@pytest.mark.slow  # `make test` runs it; `pytest -m 'not slow'` is the quick loop
def test_full_resolution_train_export_classify(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    write_dataset(data, plates=1, fields_per_class=1, seed=3, workers=2)  # 13 full-size fields
    fields = load_fields(data)
    assert len(fields) == 13

    train(
        TrainConfig(data=str(data), out=str(run), epochs=1, batch_size=4, val_fraction=0.0, workers=0),
        console=Console(quiet=True),
    )
    info = json.loads((run / "run.json").read_text())
    assert (info["model_config"]["height"], info["model_config"]["width"]) == (1024, 1280)

    exported = export_run(run, parity_fields=2, log=lambda *_: None)
    assert exported["parity"]["openvino"]["top1_agree"] and exported["parity"]["onnxruntime"]["top1_agree"]

    plate = fields[0].paths[0].parent
    summary = classify_plate(plate, run / "export", tmp_path / "results")
    assert summary["counts"]["classified"] == 13 and summary["counts"]["failed"] == 0
    rows = list(csv.DictReader(open(tmp_path / "results" / "fields.csv")))
    assert len(rows) == 13 and all(r["Classify_Class"] in info["labels"] for r in rows)

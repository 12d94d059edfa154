"""The classic baseline: held out by compound and week, it cannot classify the default synthetic
plates (their classes differ in morphology, not brightness), yet classifies plates whose classes
differ in brightness; `evaluate --baseline` scores it beside the model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from appliance.layouts.bbbc021 import class_names, load_fields
from appliance.synth import write_dataset
from tests.conftest import command_line
from training import baseline

SIZE = (256, 320)  # about 15 DMSO cells a field
ONE_EPOCH = {"epochs": 1, "batch_size": 2, "size": "128x128", "precision": "fp32", "workers": 0}


def heldout_accuracy(root, cue: bool) -> float:
    """Two training plates of the training compounds; a third week's plate of the held-out ones."""
    common = dict(fields_per_class=8, size=SIZE, seed=0, brightness_cue=cue, workers=2)
    write_dataset(root / "train", plates=2, compounds="train", **common)
    write_dataset(root / "heldout", plates=1, first_plate=2, compounds="heldout", **common)
    train, test = load_fields(root / "train"), load_fields(root / "heldout")
    assert not {f.compound for f in train} & {f.compound for f in test if f.moa != "DMSO"}
    labels = tuple(class_names(train))
    scored, probabilities, failed = baseline.predict_split(train, test, labels, SIZE)
    assert len(scored) == len(test) == 13 * 8 and not failed
    predicted = np.array(labels)[probabilities.argmax(axis=1)]
    return float((predicted == np.array([f.moa for f in scored])).mean())


def test_baseline_cannot_classify_the_default_plates(tmp_path):
    assert heldout_accuracy(tmp_path, cue=False) <= 0.5


def test_baseline_classifies_plates_whose_classes_differ_in_brightness(tmp_path):
    assert heldout_accuracy(tmp_path, cue=True) >= 0.85


def test_features_are_finite_and_see_nuclei():
    from appliance.synth import render_field

    image = render_field("DMSO", 1.0, 1, np.random.default_rng(0), SIZE)
    x = baseline.field_features(image)
    assert x.shape == (46,) and np.isfinite(x).all()
    count = np.expm1(x[21])  # nuclei counted in a DMSO field of this size: about 15
    assert 5 <= count <= 40
    with pytest.raises(ValueError, match="two classes"):
        baseline.fit(x[None].repeat(3, axis=0), ["DMSO"] * 3, ("DMSO",))


def test_evaluate_scores_the_baseline_beside_the_model(two_per_class, tmp_path):
    """Through the CLI in child processes, as a user runs it: training in the pytest process leaves torch's
    and its allocator's state behind, and scikit-image/scikit-learn's OpenMP runtime beside it crashed."""
    run = tmp_path / "run"
    cli = [sys.executable, "-c", "from appliance.cli import app; app(prog_name='mcnn-appliance')"]
    for args in (command_line("train", two_per_class, out=run, target_acc=0, **ONE_EPOCH), ["evaluate", str(run)]):
        done = subprocess.run(
            [*cli, *args, *(["--baseline"] if args[0] == "evaluate" else [])],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr
    assert "classic baseline" in done.stdout
    summary = json.loads((run / "evaluation" / "evaluation.json").read_text())
    scored = summary["baseline"]
    assert scored["fields"] == summary["fields"] == 13 and scored["treatments"] == summary["treatments"]
    assert 0.0 <= scored["field_accuracy"] <= 1.0 and not scored["failed"]

"""The classic baseline (training/baseline.py) on synthetic plates: default ones and brightness-cue ones.

Trains on `--plates` plates of the training compounds and scores a plate of another week holding
the held-out compounds (not-same-compound, as the demo does). On the default plates the baseline
should stay at or below 50 % held-out field accuracy (classes show in morphology, not brightness);
on plates whose classes differ in stain brightness it should score high (the baseline works).

    python benchmarks/baseline_synth.py --size 256x320 --fields-per-class 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.console import parse_size
from appliance.layouts.bbbc021 import class_names, load_fields
from appliance.synth import write_heldout_split
from training import baseline


def heldout_scores(
    root: Path, size: tuple[int, int], plates: int, fields_per_class: int, cue: bool, seed: int = 0
) -> dict:
    """Write the plates under root, fit the baseline on the training plates, score the held-out plate."""
    common = dict(size=size, seed=seed, brightness_cue=cue, workers=2)
    write_heldout_split(root / "train", root / "heldout", plates, fields_per_class, fields_per_class, **common)
    train_fields, test_fields = load_fields(root / "train"), load_fields(root / "heldout")
    labels = tuple(class_names(train_fields))
    start = time.perf_counter()
    x_train, train_fields, _ = baseline.features(train_fields, size)
    x_test, test_fields, _ = baseline.features(test_fields, size)
    seconds = time.perf_counter() - start
    model = baseline.fit(x_train, [f.moa for f in train_fields], labels, seed)
    predicted = np.array(labels)[model.probabilities(x_test).argmax(axis=1)]
    truth = np.array([f.moa for f in test_fields])
    train_predicted = np.array(labels)[model.probabilities(x_train).argmax(axis=1)]
    return {
        "heldout_accuracy": float((predicted == truth).mean()),
        "train_accuracy": float((train_predicted == np.array([f.moa for f in train_fields])).mean()),
        "fields": (len(train_fields), len(test_fields)),
        "feature_s_per_field": seconds / (len(train_fields) + len(test_fields)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="256x320")
    parser.add_argument("--plates", type=int, default=2, help="training plates (weeks)")
    parser.add_argument("--fields-per-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        for cue in (False, True):
            result = heldout_scores(Path(tmp) / str(cue), size, args.plates, args.fields_per_class, cue, args.seed)
            name = "brightness-cue plates" if cue else "default plates      "
            print(
                f"{name}: baseline held-out field accuracy {result['heldout_accuracy']:.1%} "
                f"(training fields {result['train_accuracy']:.1%}; {result['fields'][0]} trained, "
                f"{result['fields'][1]} held out, {args.size}, "
                f"features {1000 * result['feature_s_per_field']:.0f} ms/field)"
            )


if __name__ == "__main__":
    main()

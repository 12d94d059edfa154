"""Phenotypes: strengths move DMSO towards a class, and the 13 classes stay apart across weeks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from appliance import synth
from appliance.imageio import read_field
from appliance.layouts import bbbc021 as metadata
from appliance.synth.phenotypes import DMSO


def test_strength_moves_dmso_part_of_the_way():
    target = synth.PHENOTYPES["DNA damage"]
    half = synth.phenotype("DNA damage", 0.5)
    assert half.dapi == pytest.approx((DMSO.dapi + target.dapi) / 2)
    assert half.stain == pytest.approx(tuple((a + b) / 2 for a, b in zip(DMSO.stain, target.stain)))
    assert synth.phenotype("DNA damage", 1.0).nuc_r == pytest.approx(target.nuc_r)
    assert synth.phenotype("Eg5 inhibitors", 0.8).mitotic_kind == "ring"  # kinds do not blend
    with pytest.raises(ValueError, match="'Unknown'"):
        synth.phenotype("Unknown", 1.0)


def test_compound_strength_is_fixed_by_the_name():
    assert synth.compound_strength("DMSO") == 1.0
    strengths = [synth.compound_strength(c) for c in ("taxol", "colchicine", "AZ138")]
    assert all(0.8 <= s < 1.0 for s in strengths) and len(set(strengths)) == 3
    # from a digest of the name, not hash(): the same in every process and on every machine
    assert strengths[0] == pytest.approx(0.8393484857, abs=1e-9)


def test_each_week_has_its_own_batch_effects():
    assert synth.week_effects(3) == synth.week_effects(3)
    assert synth.week_effects(3) != synth.week_effects(4)


def features(image: np.ndarray) -> np.ndarray:
    """A few global, hand-made features of a field: what coarse pooling would see."""
    out, cover = [], []
    for channel in image.astype(np.float32):
        background = np.percentile(channel, 10)
        signal = channel - background
        foreground = signal > 250
        cover.append(foreground.mean() + 1e-4)
        h, w = signal.shape
        blocks = signal[: h // 32 * 32, : w // 32 * 32].reshape(h // 32, 32, w // 32, 32).mean(axis=(1, 3))
        out += [
            signal.mean(),
            signal.std(),
            np.percentile(signal, 99),
            np.percentile(signal, 99.9),
            cover[-1],
            signal[foreground].mean() if foreground.any() else 0.0,
            blocks.std(),
        ]
    feats = np.log(np.maximum(np.array(out), 0) + 1)
    return np.concatenate([feats, np.log([cover[0] / cover[1], cover[2] / cover[1]])])


def plate_features(root: Path):
    fields = metadata.load_fields(root)
    x = np.stack([features(read_field(f.paths, (256, 320))) for f in fields])
    return x, np.array([f.moa for f in fields])


def test_classes_separate_across_weeks(tmp_path):
    """Nearest centroid on global features: trained on one plate, tested on another week's."""
    synth.write_dataset(tmp_path / "train", plates=1, fields_per_class=8, size=(256, 320), seed=0)
    synth.write_dataset(tmp_path / "test", plates=1, fields_per_class=8, size=(256, 320), seed=0, first_plate=4)
    x_train, y_train = plate_features(tmp_path / "train")
    x_test, y_test = plate_features(tmp_path / "test")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    classes = sorted(set(y_train))
    centroids = np.stack([((x_train[y_train == c] - mean) / std).mean(axis=0) for c in classes])
    distance = ((((x_test - mean) / std)[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    predicted = np.array(classes)[distance.argmin(axis=1)]
    accuracy = float((predicted == y_test).mean())
    assert accuracy >= 0.95, Counter(zip(y_test[predicted != y_test], predicted[predicted != y_test]))

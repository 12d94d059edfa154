"""Phenotypes: strengths move DMSO towards a class per compound and dose; nuisances; brightness tells no class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance import synth
from appliance.imageio import read_field
from appliance.layouts import bbbc021 as metadata
from appliance.synth.nuisances import draw_conditions
from appliance.synth.phenotypes import DMSO


def test_strength_moves_dmso_part_of_the_way():
    target = synth.PHENOTYPES["DNA damage"]
    half = synth.phenotype("DNA damage", 0.5)
    assert half.dapi == pytest.approx((DMSO.dapi + target.dapi) / 2)
    assert half.nuc_r == pytest.approx((DMSO.nuc_r + target.nuc_r) / 2)
    assert synth.phenotype("DNA damage", 1.0).nuc_r == pytest.approx(target.nuc_r)
    assert synth.phenotype("Eg5 inhibitors", 0.8).mitotic_kind == "ring"  # kinds do not blend
    with pytest.raises(ValueError, match="'Unknown'"):
        synth.phenotype("Unknown", 1.0)


def test_each_compound_is_its_own_variant_of_its_class():
    moa = "Microtubule destabilizers"
    a, b = (synth.phenotype(moa, 0.7, c) for c in ("vincristine", "colchicine"))
    assert a != b and a.mitotic_kind == b.mitotic_kind == "clump"
    target = synth.PHENOTYPES[moa]
    for variant in (a, b):  # each feature moved towards the class, never past it
        assert DMSO.cell_r >= variant.cell_r >= target.cell_r and DMSO.mitotic <= variant.mitotic <= target.mitotic
    assert synth.phenotype(moa, 0.7, "vincristine") == a  # fixed by the name


def test_strength_grows_with_the_dose_and_is_fixed_by_the_name():
    assert synth.compound_strength("DMSO") == 1.0
    strengths = [synth.compound_strength(c) for c in ("taxol", "colchicine", "AZ138")]
    assert all(0.75 <= s < 1.0 for s in strengths) and len(set(strengths)) == 3
    # from a digest of the name, not hash(): the same in every process and on every machine
    assert strengths[0] == pytest.approx(0.7991856072, abs=1e-9)
    doses = [0.1, 0.3, 3.0]
    by_dose = [synth.dose_strength("taxol", c, doses) for c in doses]
    assert by_dose == sorted(by_dose) and by_dose[-1] == strengths[0]
    assert by_dose[0] == pytest.approx(0.6 * strengths[0])  # low doses approach DMSO
    assert synth.dose_strength("bryostatin", 0.1, [0.1]) == synth.compound_strength("bryostatin")


def test_each_week_has_its_own_batch_effects():
    assert synth.week_effects(3) == synth.week_effects(3)
    assert synth.week_effects(3) != synth.week_effects(4)


def test_nuisances_at_their_rates():
    rng = np.random.default_rng(0)
    drawn = [draw_conditions(rng) for _ in range(4000)]
    rates = {
        "out of focus": np.mean([c.blur >= 2 for c in drawn]),
        "debris": np.mean([c.debris > 0 for c in drawn]),
        "saturated": np.mean([c.saturated > 0 for c in drawn]),
        "seeding gradient": np.mean([c.gradient != (0.0, 0.0) for c in drawn]),
    }
    expected = {"out of focus": 0.06, "debris": 0.12, "saturated": 0.04, "seeding gradient": 0.3}
    for name, rate in rates.items():
        assert abs(rate - expected[name]) < 0.02, (name, rate)
    gains = np.log([c.gain for c in drawn])
    assert gains.max() - gains.min() > np.log(2.5)  # each stain's gain varies over 2.5-fold and more


def test_brightness_alone_does_not_tell_the_classes(tmp_path):
    """Nearest centroid on each stain's mean intensity over background: trained on one plate, tested on another week's.
    The field-to-field gains are wider than any class's effect on the mean; with the brightness cue
    turned on (a sanity check), the same classifier tells most classes apart."""
    accuracy = {}
    for cue in (False, True):
        root = tmp_path / str(cue)
        args = dict(fields_per_class=6, size=(128, 160), seed=0, brightness_cue=cue)
        synth.write_dataset(root / "train", plates=1, **args)
        synth.write_dataset(root / "test", plates=1, first_plate=4, **args)
        x_train, y_train = mean_intensities(root / "train")
        x_test, y_test = mean_intensities(root / "test")
        classes = sorted(set(y_train))
        centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in classes])
        distance = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        accuracy[cue] = float((np.array(classes)[distance.argmin(axis=1)] == y_test).mean())
    assert accuracy[False] <= 0.3 and accuracy[True] >= 0.5, accuracy  # chance: 1 in 13


def mean_intensities(root: Path):
    """Each stain's mean over its background (the 5th percentile), in log: how bright the stain is."""
    fields = metadata.load_fields(root)
    pixels = [read_field(f.paths, (128, 160)).reshape(3, -1).astype(np.float64) for f in fields]
    x = np.stack([np.log(p.mean(axis=1) - np.percentile(p, 5, axis=1) + 1) for p in pixels])
    return x, np.array([f.moa for f in fields])

from pathlib import Path

import numpy as np
import pytest

from appliance.layouts.bbbc021 import IMAGE_CSV, load_fields
from appliance.normalization import Normalization
from appliance.synth import write_dataset
from training.data import (CONTROL, FieldDataset, SplitError, folds, holdout_compounds, select_split,
                           stratified_split)

JITTER = 0.15

SIZE = (128, 256)


def test_augmentation_keeps_geometry_and_only_flips_and_scales(tmp_path):
    write_dataset(tmp_path, plates=1, fields_per_class=1, size=SIZE, seed=2)
    fields = load_fields(tmp_path)
    labels = sorted({f.moa for f in fields})
    identity = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    plain = FieldDataset(fields, labels, SIZE, identity)
    augmented = FieldDataset(fields, labels, SIZE, identity, augment=True, gain_jitter=JITTER, seed=0)
    for i in range(len(fields)):
        (x, y), (a, b) = plain[i], augmented[i]
        assert y == b and a.shape == x.shape == (3, *SIZE)
        x, a = x.numpy(), a.numpy()
        # undo whichever flips were drawn, then the only difference is one gain per stain
        match = [f for f in (x, x[:, :, ::-1], x[:, ::-1, :], x[:, ::-1, ::-1])
                 if np.allclose(a / np.maximum(f, 1), (a / np.maximum(f, 1)).mean(axis=(1, 2), keepdims=True),
                                rtol=1e-3)]
        assert match, f"field {i}: augmentation is not a flip and a per-stain gain"
        gain = (a.sum(axis=(1, 2)) / match[0].sum(axis=(1, 2)))
        assert np.all(np.abs(np.log(gain)) <= JITTER + 1e-4)
    augmented.epoch = 1
    assert not np.array_equal(augmented[0][0].numpy(), FieldDataset(
        fields, labels, SIZE, identity, augment=True, gain_jitter=JITTER, seed=0)[0][0].numpy())  # new draws each epoch


# --- splits on the real, published BBBC021 metadata -------------------------------------------

SHARED = Path(__file__).resolve().parents[3] / "shared" / "bbbc021"
needs_real_csvs = pytest.mark.skipif(not (SHARED / IMAGE_CSV).is_file(), reason=f"{SHARED} not present")


@pytest.fixture(scope="module")
def bbbc021():
    return load_fields(SHARED)


@needs_real_csvs
def test_the_real_metadata_has_38_compounds_103_treatments_and_12_moas(bbbc021):
    treatments = {(f.compound, f.concentration) for f in bbbc021 if f.moa != CONTROL}
    assert len(bbbc021) == 3848 and len(treatments) == 103
    assert len(holdout_compounds(bbbc021)) == 38 and CONTROL not in holdout_compounds(bbbc021)
    assert len({f.moa for f in bbbc021} - {CONTROL}) == 12


@needs_real_csvs
def test_every_nsc_fold_holds_out_one_whole_compound_and_keeps_every_class(bbbc021):
    classes = {f.moa for f in bbbc021}
    compounds = holdout_compounds(bbbc021)
    assert [fold.problem for fold in folds(bbbc021, "nsc")] == [None] * 38  # every class has >= 2 compounds
    for k, compound in enumerate(compounds):
        train, val = select_split(bbbc021, "nsc", k)
        assert {f.compound for f in val} == {compound}
        assert compound not in {f.compound for f in train}
        assert len(train) + len(val) == len(bbbc021)  # nothing else left out
        assert {f.moa for f in train} == classes  # the held-out class, and DMSO, are still trained on
        assert CONTROL not in {f.moa for f in val}


@needs_real_csvs
def test_nscb_folds_also_leave_the_compounds_weeks_out_of_training(bbbc021):
    by_index = {fold.index: fold for fold in folds(bbbc021, "nscb")}
    for fold in by_index.values():
        if fold.problem:
            with pytest.raises(SplitError, match="no training field of its class"):
                select_split(bbbc021, "nscb", fold.index)
            continue
        train, val = select_split(bbbc021, "nscb", fold.index)
        weeks = {f.week for f in val}
        assert weeks == set(fold.excluded_weeks) and not weeks & {f.week for f in train}
        assert fold.compound not in {f.compound for f in train} and {f.compound for f in val} == {fold.compound}
        assert set(fold.classes) <= {f.moa for f in train}
        # only the held-out weeks went: every other field is trained on
        assert len(train) == sum(f.week not in weeks for f in bbbc021)
    skipped = {fold.compound for fold in by_index.values() if fold.problem}
    # Kinase inhibitors (all Week7) and cholesterol-lowering (both Week9) have no compound in another
    # week; taxol is imaged in every week.
    assert skipped == {"alsterpaullone", "bryostatin", "PD-169316", "mevinolin/lovastatin", "simvastatin", "taxol"}


@needs_real_csvs
def test_a_fold_out_of_range_or_a_class_with_one_compound_is_refused(bbbc021):
    with pytest.raises(SplitError, match="fold from 0 to 37"):
        select_split(bbbc021, "nsc", 38)
    with pytest.raises(SplitError, match="fold from 0 to 37"):
        select_split(bbbc021, "nsc", None)
    with pytest.raises(SplitError, match="one of stratified, nsc, nscb"):
        select_split(bbbc021, "leave-one-out", 0)
    one_compound = [f for f in bbbc021 if f.compound not in ("AZ-C",)]  # Eg5 inhibitors: AZ138 left alone
    fold = next(f for f in folds(one_compound, "nsc") if f.compound == "AZ138")
    assert "Eg5 inhibitors" in fold.problem
    with pytest.raises(SplitError, match="Eg5 inhibitors"):
        select_split(one_compound, "nsc", fold.index)


def test_stratified_is_the_default_split(tmp_path):
    write_dataset(tmp_path, plates=1, fields_per_class=2, size=(64, 80), seed=0)
    fields = load_fields(tmp_path)
    assert select_split(fields, val_fraction=0.5, seed=3) == stratified_split(fields, 0.5, 3)

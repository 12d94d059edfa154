"""Splits: pure functions of the fields. The real BBBC021 metadata (../shared/bbbc021, the
`shared_bbbc021` fixture) checks them where the literature's figures are known."""

import csv

import pytest

from appliance.fieldsets import from_split
from appliance.layouts.base import Field
from appliance.layouts.bbbc021 import load_fields
from appliance.synth import write_dataset
from training.splits import (
    CONTROL,
    SplitError,
    chosen_folds,
    folds,
    holdout_compounds,
    select_split,
    spread_sample,
    stratified_split,
    write_split,
)


def field(compound: str, moa: str, site: int = 1, week: str = "Week1") -> Field:
    return Field(
        plate=f"{week}_1", well="B02", site=site, week=week, compound=compound, concentration=1.0, moa=moa, paths=()
    )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """13 classes, 3 fields each (64x80: the splits never read the pixels)."""
    out = tmp_path_factory.mktemp("data")
    write_dataset(out, plates=1, fields_per_class=3, size=(64, 80), seed=1)
    return load_fields(out)


def test_stratified_split_holds_out_every_class(synthetic):
    train_fields, val_fields = stratified_split(synthetic, 0.34, seed=0)
    assert {f.moa for f in val_fields} == {f.moa for f in synthetic}  # 13 classes, one of three each
    assert len(val_fields) == 13
    assert len(train_fields) + len(val_fields) == len(synthetic) and not set(train_fields) & set(val_fields)
    assert stratified_split(synthetic, 0.34, seed=1) != (train_fields, val_fields)  # the seed draws the fields


def test_a_class_of_one_field_is_trained_on_and_no_fraction_holds_out_nothing():
    fields = [field("a", "A", 1), field("a", "A", 2), field("b", "B")]
    train, val = stratified_split(fields, 0.2, seed=0)
    assert [f.moa for f in val] == ["A"] and len(train) == 2  # at least one of A held out, B's only field kept
    assert stratified_split(fields, 0.0, seed=0) == (fields, [])


def test_stratified_is_the_default_split(synthetic):
    assert select_split(synthetic, val_fraction=0.5, seed=3) == stratified_split(synthetic, 0.5, 3)


def test_the_split_file_lists_every_field_once_with_absolute_paths(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths would be written relative to here
    train_fields, val_fields = stratified_split(synthetic, 0.34, seed=0)
    write_split(tmp_path / "split.csv", train_fields, val_fields)
    rows = from_split(tmp_path)  # as export and evaluate read it
    assert [r.split for r in rows] == ["train"] * len(train_fields) + ["val"] * len(val_fields)
    assert [(r.plate, r.well, r.site, r.moa) for r in rows] == [
        (f.plate, f.well, f.site, f.moa) for f in train_fields + val_fields
    ]
    assert all(p.is_absolute() and p.is_file() for r in rows for p in r.paths)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically, nothing left over
    with open(tmp_path / "split.csv", newline="") as f:
        assert len(list(csv.reader(f))) == len(synthetic) + 1


def test_a_spread_sample_takes_both_ends_and_every_class():
    fields = [field(f"c{i}", f"M{i // 4}", i) for i in range(20)]  # 5 classes of 4, grouped
    sample = spread_sample(fields, 5)
    assert sample[0] is fields[0] and sample[-1] is fields[-1]
    assert {f.moa for f in sample} == {f.moa for f in fields}
    assert spread_sample(fields[:3], 5) == fields[:3]


def test_no_trainable_fold_is_an_error():
    only_one_compound = [field("AZ138", "Eg5 inhibitors"), field("DMSO", "DMSO", 2)]
    with pytest.raises(SplitError, match="no nsc fold can be trained: holding out 'AZ138'"):
        chosen_folds(lambda: only_one_compound, "nsc", "all")
    with pytest.raises(SplitError, match="no compound but the control"):
        chosen_folds(lambda: only_one_compound[1:], "nscb", "0")


def test_the_stratified_split_reads_no_fields():
    def load():
        raise AssertionError("the stratified split needs no metadata read")

    assert chosen_folds(load, "stratified", None) == ([None], [])
    with pytest.raises(SplitError, match="one of stratified, nsc, nscb"):
        chosen_folds(load, "random", None)


# --- on the real, published BBBC021 metadata -------------------------------------------------


@pytest.fixture(scope="module")
def bbbc021(shared_bbbc021):
    return load_fields(shared_bbbc021)


def test_the_real_metadata_has_38_compounds_103_treatments_and_12_moas(bbbc021):
    treatments = {(f.compound, f.concentration) for f in bbbc021 if f.moa != CONTROL}
    assert len(bbbc021) == 3848 and len(treatments) == 103
    assert len(holdout_compounds(bbbc021)) == 38 and CONTROL not in holdout_compounds(bbbc021)
    assert len({f.moa for f in bbbc021} - {CONTROL}) == 12


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

"""Labelled field sets: split.csv rows, stratified selection, accuracy."""

import numpy as np
import pytest

from appliance.fieldsets import accuracy, from_split, read_raw, stratified
from appliance.layouts.base import Field
from tests.conftest import LABELS, write_split


def fields(counts: dict[str, int]) -> list[Field]:
    return [Field(moa, "B02", i, (), moa=moa) for moa, n in counts.items() for i in range(n)]


def test_stratified_takes_classes_in_turn():
    chosen = stratified(fields({"b": 5, "a": 1, "c": 2}), count=5)
    assert [f.moa for f in chosen] == ["a", "b", "c", "b", "c"]
    assert stratified(fields({"b": 5, "a": 1, "c": 2}), count=5) == chosen  # seeded
    assert len(stratified(fields({"a": 2}), count=10)) == 2


def test_split_rows_read_back(tmp_path):
    write_split(tmp_path, n_train=2, n_val=3)
    rows = from_split(tmp_path)
    assert [f.split for f in rows] == ["train"] * 2 + ["val"] * 3
    assert rows[0].moa == LABELS[0] and rows[0].name == "Week1_22123/B02/s1"
    raw = read_raw(rows[:2], (128, 128))
    assert raw.shape == (2, 3, 128, 128) and raw.dtype == np.uint16 and raw.any()


def test_accuracy_in_percent_and_unknown_classes_refused():
    labelled = fields({"a": 1, "b": 1, "c": 2})
    probabilities = np.eye(3)[[0, 1, 2, 0]]  # the last one wrong
    assert accuracy(probabilities, labelled, ("a", "b", "c")) == 75.0
    with pytest.raises(ValueError, match="labelled c: not classes of this model"):
        accuracy(probabilities[:, :2], labelled, ("a", "b"))

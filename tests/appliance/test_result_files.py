"""A PlateResults on disk: every file written once, summary.json last, and read back into the same object."""

import csv
import errno
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from appliance.result_files import read_results, write_results
from appliance.result_rows import probability_column
from appliance.results import ResultsError
from tests.appliance.test_results import LABELS, made_results

WELLS = ["B02", "B03", "C02"]
FAILURES = [("C03", 1, "C03_s1_w2.tif", "truncated TIFF"), ("C03", 2, "C03_s2_w4.tif", "missing channel Actin (w4)")]


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# The files of a results set with embeddings (treatments.csv too when compounds are known), in no order.
TABLES = ("fields.csv", "fields.parquet", "wells.csv", "failures.csv", "embeddings.parquet", "profiles.parquet")
RESULT_SET = (*TABLES, "plate_map.png", "report.html", "summary.json")


def renamed_into_place(monkeypatch, folder: Path) -> list[str]:
    """The files renamed into folder from now on, in order (a sub-folder's as sub/name): every atomic
    write ends with one os.replace, so a file written twice is there twice."""
    real, seen = os.replace, []

    def counting(src, dst, *args, **kwargs):
        seen.append(Path(dst).relative_to(folder).as_posix())
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr("appliance.files.os.replace", counting)
    return seen


def test_read_results_rebuilds_what_was_written(tmp_path):
    written = made_results(
        tmp_path, WELLS, failures=FAILURES, compounds={"B02": "taxol", "B03": "taxol"}, embeddings=True
    )
    summary = write_results(written)
    read = read_results(tmp_path)
    assert read.summary == summary == written.summary
    assert (read.labels, read.channels) == (written.labels, written.channels)
    for part in ("fields", "failures", "wells", "treatments"):
        assert getattr(read, part) == getattr(written, part), part
    np.testing.assert_array_equal(read.embeddings, written.embeddings)

    fields = rows_of(tmp_path / "fields.csv")
    assert len(fields) == 6 and fields[4]["Metadata_Compound"] == ""
    assert fields[0]["Metadata_Concentration"] == "0.1"  # exactly: the shortest text of the float
    assert pq.read_table(tmp_path / "fields.parquet").column("Metadata_Compound").to_pylist()[4] is None
    assert list(rows_of(tmp_path / "treatments.csv")[0]) == [
        "Metadata_Compound",
        "Metadata_Concentration",
        "Count_Wells",
        "Count_Fields",
        *(probability_column(label) for label in LABELS),
        "Classify_Class",
        "Classify_Confidence",
        "Metadata_MoA",
        "Classify_Correct",
        "Classify_LowConfidence",
        "Classify_Agreement",
    ]
    assert [(f["Metadata_Well"], f["Reason"]) for f in rows_of(tmp_path / "failures.csv")] == [
        ("C03", "truncated TIFF"),
        ("C03", "missing channel Actin (w4)"),
    ]


def test_every_file_is_written_once_and_the_summary_last(tmp_path, monkeypatch):
    replaced = renamed_into_place(monkeypatch, tmp_path)
    results = made_results(tmp_path, WELLS, compounds={"B02": "taxol"}, embeddings=True)
    write_results(results)
    assert sorted(replaced) == sorted([*RESULT_SET, "treatments.csv"]) and replaced[-1] == "summary.json"


def test_a_failed_write_leaves_no_summary_to_vouch_for_a_mixed_set(tmp_path, monkeypatch):
    write_results(made_results(tmp_path, WELLS, seed=1))
    real = os.replace

    def disk_full_at_wells(src, dst, *args, **kwargs):
        if os.path.basename(dst) == "wells.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr("appliance.files.os.replace", disk_full_at_wells)
    with pytest.raises(OSError, match="wells.csv: cannot write"):
        write_results(made_results(tmp_path, WELLS, seed=2))
    assert not (tmp_path / "summary.json").exists()  # the new fields.csv is there, the old wells.csv too
    with pytest.raises(ResultsError, match="summary.json: missing"):
        read_results(tmp_path)


def test_files_an_earlier_set_had_are_removed_when_this_one_has_none(tmp_path):
    write_results(made_results(tmp_path, WELLS, compounds={"B02": "taxol"}, embeddings=True))
    assert (tmp_path / "treatments.csv").is_file() and (tmp_path / "embeddings.parquet").is_file()
    summary = write_results(made_results(tmp_path, WELLS))
    assert not (tmp_path / "treatments.csv").exists() and not (tmp_path / "embeddings.parquet").exists()
    assert "treatments" not in summary["files"] and read_results(tmp_path).embeddings is None


def test_an_incomplete_or_foreign_folder_is_refused_by_name(tmp_path):
    with pytest.raises(ResultsError, match="summary.json: missing"):
        read_results(tmp_path)
    write_results(made_results(tmp_path, WELLS, embeddings=True))
    (tmp_path / "embeddings.parquet").unlink()
    with pytest.raises(ResultsError, match="embeddings.parquet: missing, though summary.json lists it"):
        read_results(tmp_path)
    (tmp_path / "summary.json").write_text('{"plate": "P1"}')
    with pytest.raises(ResultsError, match="summary.json: not a results summary"):
        read_results(tmp_path)


def test_every_number_is_written_exactly(tmp_path):
    """A concentration of 1e-7 is 1e-07, not 0.000000; each probability reads back as the very float written."""
    from appliance.result_files import csv_value

    assert [csv_value(v) for v in (1e-07, 0.1, 1 / 3, np.float32(0.1), float("nan"), None, 3)] == [
        "1e-07",
        "0.1",
        "0.3333333333333333",
        "0.10000000149011612",  # a float32 widened exactly
        "",
        "",
        "3",
    ]
    results = made_results(tmp_path, WELLS, compounds={"B02": "taxol"})
    results.fields[0]["Metadata_Concentration"] = 1e-07
    write_results(results)
    fields = rows_of(tmp_path / "fields.csv")
    assert fields[0]["Metadata_Concentration"] == "1e-07"
    for row, written in zip(fields, results.fields):
        for column in (probability_column(label) for label in LABELS):
            assert float(row[column]) == written[column]

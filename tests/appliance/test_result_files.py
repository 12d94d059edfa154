"""A PlateResults on disk: every file written once, summary.json last, and read back into the same object."""

import csv
import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from appliance.result_files import finish_incoming, read_results, write_results
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


def written_once_and_moved_in(replaced: list[str], names) -> bool:
    """Each file of the set written once into .incoming and moved in once, summary.json last both times."""
    staged = [name.removeprefix(".incoming/") for name in replaced if name.startswith(".incoming/")]
    moved = [name for name in replaced if "/" not in name]
    return all(sorted(done) == sorted(names) and done[-1] == "summary.json" for done in (staged, moved))


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
    assert written_once_and_moved_in(replaced, [*RESULT_SET, "treatments.csv"]), replaced


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# The new set: the four tables, treatments.csv, plate_map.png, report.html, summary.json. Failing before the
# first, a middle and the last file.
@pytest.mark.parametrize("written", [0, 3, 7])
def test_a_full_disk_after_any_file_leaves_the_earlier_set_whole(tmp_path, monkeypatch, written):
    """The atomic writer fails (ENOSPC) after `written` files of the new set: the old set stays, every byte."""
    write_results(made_results(tmp_path, WELLS, seed=1, embeddings=True))
    before = folder_bytes(tmp_path)
    real, staged = os.replace, []

    def disk_full_after(src, dst, *args, **kwargs):
        if Path(dst).parent.name == ".incoming":
            if len(staged) == written:
                raise OSError(errno.ENOSPC, "No space left on device")
            staged.append(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr("appliance.files.os.replace", disk_full_after)
    with pytest.raises(OSError, match="No space left on device.*results already there are whole and unchanged"):
        write_results(made_results(tmp_path, WELLS, seed=2, compounds={"B02": "taxol"}))
    monkeypatch.undo()
    assert folder_bytes(tmp_path) == before and not (tmp_path / ".incoming").exists()
    assert read_results(tmp_path).fields == made_results(tmp_path, WELLS, seed=1).fields


def test_a_set_a_crash_left_half_moved_in_is_finished_by_the_next_writer(tmp_path, monkeypatch):
    write_results(made_results(tmp_path, WELLS, seed=1, embeddings=True))
    real, moved = os.replace, []

    def crash_while_moving_in(src, dst, *args, **kwargs):
        if Path(src).parent.name == ".incoming" and Path(dst).parent == tmp_path:
            if len(moved) == 3:
                raise KeyboardInterrupt  # stands for a power cut: nothing after this runs
            moved.append(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr("appliance.files.os.replace", crash_while_moving_in)
    new = made_results(tmp_path, WELLS, seed=2)  # no embeddings: the earlier set's must go
    with pytest.raises(KeyboardInterrupt):
        write_results(new)
    monkeypatch.undo()
    assert not (tmp_path / "summary.json").exists()  # half moved in: the folder vouches for nothing
    with pytest.raises(ResultsError, match="stopped while moving its results in from .incoming; rerun"):
        read_results(tmp_path)
    finish_incoming(tmp_path)  # what the next classify or merge into the folder does first
    read = read_results(tmp_path)
    assert read.fields == new.fields and read.embeddings is None and not (tmp_path / "embeddings.parquet").exists()
    assert not (tmp_path / ".incoming").exists()


def tmpfs(folder: Path, size: str):
    """A real small tmpfs at folder (needs root and mount), or skip saying why."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'})")
    return folder


def test_a_really_full_disk_leaves_the_earlier_set_whole(tmp_path):
    disk = tmpfs(tmp_path / "disk", "2m")
    try:
        out = disk / "out"
        write_results(made_results(out, WELLS, seed=1))
        before = folder_bytes(out)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 96 * 1024))  # room for part of the next set only
        bigger = made_results(out, [f"{r}{c:02d}" for r in "BCDEFG" for c in range(2, 12)], seed=2, embeddings=True)
        with pytest.raises(OSError, match="No space left on device.*results already there are whole and unchanged"):
            write_results(bigger)
        assert folder_bytes(out) == before and not (out / ".incoming").exists()
        assert read_results(out).fields == made_results(out, WELLS, seed=1).fields
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_first_set_that_does_not_fit_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr("appliance.files.os.replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="cannot write the results .*full.*; no results were written there"):
        write_results(made_results(tmp_path / "out", WELLS))
    monkeypatch.undo()
    assert list((tmp_path / "out").iterdir()) == []


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

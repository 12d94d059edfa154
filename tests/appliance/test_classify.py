"""A tiny plate end to end: the result files, resuming after a stop, a crash or a kill -9, shards."""

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import openvino as ov
import pyarrow.parquet as pq
import pytest

from appliance.classify import classify_plate, default_out, shard_of
from appliance.files import WriteError
from appliance.inference import Classifier
from appliance.report import write_report
from appliance.result_files import read_results
from appliance.result_rows import field_columns, probability_column
from appliance.results import ResultsError
from tests.appliance.test_chunks import stopped_run
from tests.appliance.test_result_files import RESULT_SET, renamed_into_place, written_once_and_moved_in
from tests.conftest import CHANNELS, LABELS, truncate, write_field, write_plate

PROBABILITIES = [probability_column(label) for label in LABELS]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return Classifier(tiny_model, "f32")  # the same figures on every CPU kind


@pytest.fixture
def damaged_plate(tmp_path):
    """3 wells x 2 sites: one truncated TIFF, one field without Actin, one field of the wrong size."""
    plate = tmp_path / "Week1_22123"
    written = write_plate(plate)
    truncate(written[("B02", 2)]["Tubulin"])
    written[("B03", 1)]["Actin"].unlink()
    for path in written[("C02", 2)].values():
        path.unlink()
    written[("C02", 2)] = write_field(plate, "C02", 2, np.random.default_rng(1), size=(64, 96))
    return plate, written


def test_classify_plate(classifier, damaged_plate, tmp_path, monkeypatch):
    plate, written = damaged_plate
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    seen = []
    summary = classify_plate(plate, classifier, progress=lambda done, total, rate: seen.append((done, total)))
    out = default_out(plate)  # under the working directory, never beside the plate in the imager's tree
    assert out == tmp_path / "work" / "results" / "Week1_22123" and summary["out"] == str(out)
    assert summary["counts"] == {"fields": 6, "classified": 3, "failed": 3, "skipped_done": 0}
    assert summary["precision"] == "f32" and summary["fields_per_s"] > 0 and not summary["interrupted"]
    assert seen[-1] == (5, 5)  # complete fields read; the one missing a channel never gets that far
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary["files"]) == {"fields", "fields_parquet", "wells", "failures", "gallery", "report"}
    assert not (out / ".partial").exists() and (out / "report.html").is_file()

    failures = read_csv(out / "failures.csv")
    assert [(f["Metadata_Well"], f["Metadata_Site"]) for f in failures] == [("B02", "2"), ("B03", "1"), ("C02", "2")]
    assert failures[0]["File"] == written[("B02", 2)]["Tubulin"].name
    assert "unreadable TIFF" in failures[0]["Reason"]
    assert failures[1]["Reason"] == "missing channel Actin (w4)"
    assert failures[2]["File"] == written[("C02", 2)]["DAPI"].name
    assert "64x96 (HxW), the model takes 128x128" in failures[2]["Reason"]

    with open(out / "fields.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == field_columns(LABELS, CHANNELS)
    assert header[23:26] == ["Probability_Actin_disruptors", "Probability_DMSO", "Probability_Microtubule_stabilizers"]
    fields = read_csv(out / "fields.csv")
    assert [(f["Metadata_Well"], f["Metadata_Row"], f["Metadata_Column"], f["Metadata_Site"]) for f in fields] == [
        ("B02", "B", "2", "1"),
        ("B03", "B", "3", "2"),
        ("C02", "C", "2", "1"),
    ]
    assert fields[0]["FileName_DAPI"] == written[("B02", 1)]["DAPI"].name
    assert fields[0]["PathName_DAPI"] == str(written[("B02", 1)]["DAPI"].parent.resolve())
    assert fields[2]["URL_Actin"] == written[("C02", 1)]["Actin"].resolve().as_uri()
    assert [f["ImageNumber"] for f in fields] == ["1", "2", "3"]
    assert (fields[0]["Frame_DAPI"], fields[0]["Metadata_Layout"], fields[0]["Metadata_Source"]) == ("", "bbbc021", "")
    assert fields[0]["Metadata_Compound"] == "" and fields[0]["Model_Precision"] == "f32"
    assert fields[0]["Model_SHA256"] == classifier.card.weights_sha256
    for row in fields:
        probs = [float(row[c]) for c in PROBABILITIES]
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert row["Classify_Class"] == LABELS[int(np.argmax(probs))]
        assert float(row["Classify_Confidence"]) == max(probs)
    table = pq.read_table(out / "fields.parquet")
    assert table.column_names == header and table.num_rows == 3
    assert table.column("Metadata_Compound").null_count == 3

    wells = read_csv(out / "wells.csv")
    assert [(w["Metadata_Well"], w["Count_Fields"], w["Classify_Agreement"]) for w in wells] == [
        ("B02", "1", "1.0"),
        ("B03", "1", "1.0"),
        ("C02", "1", "1.0"),
    ]
    assert not (out / "treatments.csv").exists()  # no compound known


def test_the_report_rebuilt_from_the_folder_is_the_one_classify_wrote(classifier, damaged_plate, monkeypatch):
    plate, _ = damaged_plate
    monkeypatch.chdir(plate.parent)
    summary = classify_plate(plate, classifier, embeddings=True)
    out = default_out(plate)
    written = (out / "report.html").read_text()
    (out / "report.html").unlink()
    results = read_results(out)
    assert write_report(results) == out / "report.html" and (out / "report.html").read_text() == written
    assert results.summary == summary and len(results.failures) == 3 and results.embeddings.shape == (3, 512)


def test_one_classify_writes_each_result_file_once_and_the_summary_last(classifier, tmp_path, monkeypatch):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03"), sites=(1, 2))
    replaced = renamed_into_place(monkeypatch, out)
    first = classify_plate(plate, classifier, out, embeddings=True, chunk_fields=2)
    final = [name for name in replaced if not name.startswith(".partial/")]  # not the chunks
    assert written_once_and_moved_in(final, [*RESULT_SET, "gallery.npz"]), final
    replaced.clear()
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in out.iterdir()}
    again = classify_plate(plate, classifier, out, embeddings=True, chunk_fields=2)  # every field done already
    assert again == {**first, "nothing_to_do": True} and replaced == []  # nothing written, the record kept
    assert {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in out.iterdir()} == before


def test_every_field_gets_its_own_probabilities_and_embedding(classifier, tmp_path):
    """Results come back in completion order: each must land on the field it belongs to."""
    written = write_plate(tmp_path / "plate", wells=("B02", "B03", "C04"), sites=(1, 2, 3), seed=5)
    summary = classify_plate(tmp_path / "plate", classifier, tmp_path / "out", embeddings=True, readers=3)
    fields = pq.read_table(tmp_path / "out" / "fields.parquet").to_pylist()
    vectors = pq.read_table(tmp_path / "out" / "embeddings.parquet")
    assert summary["files"]["embeddings"] == "embeddings.parquet" and len(fields) == 9
    metadata = [c for c in vectors.column_names if c.startswith("Metadata_")]
    assert vectors.column_names == [*metadata, *(f"Image_MCNN_{i:03d}" for i in range(512))]
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Compound", "Metadata_Layout"} <= set(metadata)
    import tifffile

    raw = np.stack(
        [
            np.stack([tifffile.imread(written[(f["Metadata_Well"], f["Metadata_Site"])][c]) for c in CHANNELS])
            for f in fields
        ]
    )
    probabilities, embedding = classifier.predict(raw)
    np.testing.assert_allclose([[f[c] for c in PROBABILITIES] for f in fields], probabilities, atol=1e-6)
    np.testing.assert_allclose(
        np.stack([vectors.column(f"Image_MCNN_{i:03d}").to_numpy() for i in range(512)], 1), embedding, atol=1e-6
    )


def test_well_is_the_mean_of_its_fields(classifier, tmp_path):
    plate = tmp_path / "plate"
    write_plate(plate, wells=("D07",), sites=(1, 2, 3))
    summary = classify_plate(plate, classifier, tmp_path / "out")
    fields, (well,) = read_csv(tmp_path / "out" / "fields.csv"), read_csv(tmp_path / "out" / "wells.csv")
    mean = np.mean([[float(f[c]) for c in PROBABILITIES] for f in fields], axis=0)
    assert well["Count_Fields"] == "3" and summary["counts"]["failed"] == 0
    np.testing.assert_allclose([float(well[c]) for c in PROBABILITIES], mean, atol=1e-5)
    assert well["Classify_Class"] == LABELS[int(np.argmax(mean))]
    agreement = np.mean([f["Classify_Class"] == well["Classify_Class"] for f in fields])
    assert float(well["Classify_Agreement"]) == pytest.approx(agreement, abs=1e-6)
    assert (
        tmp_path / "out" / "failures.csv"
    ).read_text().strip() == "Metadata_Plate,Metadata_Well,Metadata_Site,File,Reason"


def test_refuses_output_inside_the_plate(tiny_model, tmp_path):
    plate = tmp_path / "plate"
    write_plate(plate, wells=("B02",), sites=(1,))
    with pytest.raises(ValueError, match="must not be inside the plate folder"):
        classify_plate(plate, tiny_model, plate / "results")


def test_stop_commits_what_is_done_and_a_rerun_finishes(classifier, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03", "B04", "C02"), sites=(1, 2, 3))
    first = stopped_run(plate, classifier, out, after=3)
    assert first["interrupted"] and 3 <= first["counts"]["classified"] < 12
    assert sorted((out / ".partial").glob("chunk-*.parquet"))  # kept for the rerun
    second = classify_plate(plate, classifier, out, chunk_fields=2)
    assert not second["interrupted"] and second["counts"]["skipped_done"] == first["counts"]["classified"]
    fields = read_csv(out / "fields.csv")
    assert len(fields) == 12 == len({(f["Metadata_Well"], f["Metadata_Site"]) for f in fields})
    assert not (out / ".partial").exists()

    summary_json = (out / "summary.json").read_bytes()
    third = classify_plate(plate, classifier, out)  # a finished folder: nothing left to do, nothing rewritten
    assert third["nothing_to_do"] and third["fields_per_s"] == second["fields_per_s"] > 0
    assert read_csv(out / "fields.csv") == fields and (out / "summary.json").read_bytes() == summary_json


def test_a_rerun_that_classifies_nothing_new_keeps_the_first_runs_figures(classifier, damaged_plate, tmp_path):
    """Only the failed fields are tried again, and fail again: the record keeps the first run's fields/s
    and timings, and lists the rerun beside them, rather than 0 fields/s."""
    plate, _ = damaged_plate
    out = tmp_path / "out"
    first = classify_plate(plate, classifier, out)
    again = classify_plate(plate, classifier, out)
    assert again["counts"]["skipped_done"] == 3 and again["counts"]["failed"] == 3 and "nothing_to_do" not in again
    assert (again["fields_per_s"], again["timings"]) == (first["fields_per_s"], first["timings"])
    assert first["fields_per_s"] > 0 and len(again["reruns"]) == 1 and "timings" in again["reruns"][0]
    assert json.loads((out / "summary.json").read_text()) == again


def test_a_rerun_with_another_model_or_shard_is_refused_not_mixed(classifier, tiny_model, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02",), sites=(1, 2))
    classify_plate(plate, classifier, out)
    before = (out / "fields.csv").read_bytes()
    network = ov.Core().read_model(tiny_model / "model.xml")
    network.set_rt_info("0" * 64, ["model_info", "weights_sha256"])
    ov.save_model(network, tmp_path / "other.xml", compress_to_fp16=False)
    other = Classifier(tmp_path / "other.xml")
    with pytest.raises(ResultsError, match="another run .*model_weights_sha256.*--force"):
        classify_plate(plate, other, out)
    with pytest.raises(ResultsError, match="shard: '0/1' -> '0/2'"):
        classify_plate(plate, classifier, out, shard=(0, 2))
    assert (out / "fields.csv").read_bytes() == before
    redone = classify_plate(plate, other, out, force=True)
    assert redone["counts"] == {"fields": 2, "classified": 2, "failed": 0, "skipped_done": 0}
    assert {r["Model_SHA256"] for r in read_csv(out / "fields.csv")} == {"0" * 64}


@contextlib.contextmanager
def read_only(folder):
    """chmod 555; root ignores permissions, so as root the folder is made immutable (chattr +i) instead."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root, which ignores file permissions, and chattr +i is unavailable here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_results_folder_is_a_clear_error_and_keeps_earlier_results(classifier, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02",), sites=(1, 2))
    classify_plate(plate, classifier, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with read_only(out):
        with pytest.raises(WriteError, match="out/.partial: cannot write.*intact"):
            classify_plate(plate, classifier, out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_full_disk_is_a_clear_error_and_keeps_committed_chunks(classifier, tmp_path, monkeypatch):
    import errno

    import appliance.result_files

    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03"), sites=(1, 2))
    real, writes = appliance.result_files.pq.write_table, []

    def fills_up(table, path, *args, **kwargs):
        writes.append(path)
        if len(writes) > 2:  # the run key is JSON; the first chunk fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, path, *args, **kwargs)

    monkeypatch.setattr(appliance.result_files.pq, "write_table", fills_up)
    with pytest.raises(WriteError, match="No space left on device.*unchanged"):
        classify_plate(plate, classifier, out, chunk_fields=1, readers=1)
    assert [p.name for p in (out / ".partial").iterdir() if p.name.startswith(".")] == []  # no temporaries
    monkeypatch.undo()
    summary = classify_plate(plate, classifier, out, chunk_fields=1)
    assert summary["counts"]["skipped_done"] == 2 and len(read_csv(out / "fields.csv")) == 4


KILLABLE = textwrap.dedent("""
    # The CLI, with each field read slowed down so the run can be killed half-way.
    import sys, time
    import appliance.field_readers
    read = appliance.field_readers.read_plate_field
    def slow(*args, **kwargs):
        time.sleep(0.15)
        return read(*args, **kwargs)
    appliance.field_readers.read_plate_field = slow
    from appliance.cli import app
    app(sys.argv[1:], prog_name="mcnn-appliance")
""")


def test_kill_9_then_rerun_gives_every_field_exactly_once(tiny_model, tmp_path):
    plate, out, reference = tmp_path / "Week1_22123", tmp_path / "killed", tmp_path / "reference"
    write_plate(plate, wells=("B02", "B03", "B04", "C02", "C03", "C04"), sites=(1, 2, 3, 4), seed=9)  # 24 fields
    command = ["classify", str(plate), "--model", str(tiny_model), "--chunk-fields", "3", "--embeddings", "--quiet"]
    run = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, *command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while len(list((out / ".partial").glob("chunk-*.parquet"))) < 2 and time.time() < deadline and run.poll() is None:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, run.stderr.read().decode()
    assert not (out / "fields.csv").exists() and not (out / "summary.json").exists()
    committed = sum(pq.read_metadata(c).num_rows for c in (out / ".partial").glob("chunk-*.parquet"))
    assert 6 <= committed < 24

    cli = [sys.executable, "-c", "from appliance.cli import app; app(prog_name='mcnn-appliance')"]
    rerun = subprocess.run([*cli, *command, "--out", str(out), "--json"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["counts"]["skipped_done"] == committed
    whole = subprocess.run([*cli, *command, "--out", str(reference)], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr

    resumed, uninterrupted = (pq.read_table(d / "fields.parquet").to_pylist() for d in (out, reference))
    keys = [(r["Metadata_Well"], r["Metadata_Site"]) for r in resumed]
    assert len(keys) == 24 == len(set(keys)) and keys == [
        (r["Metadata_Well"], r["Metadata_Site"]) for r in uninterrupted
    ]
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert a["Classify_Class"] == b["Classify_Class"]
        np.testing.assert_allclose([a[c] for c in PROBABILITIES], [b[c] for c in PROBABILITIES], atol=1e-6)
    embedded = [pq.read_table(d / "embeddings.parquet") for d in (out, reference)]
    assert embedded[0].num_rows == 24
    vectors = [np.stack([table.column(f"Image_MCNN_{i:03d}").to_numpy() for i in range(512)], 1) for table in embedded]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_sigterm_finishes_the_fields_in_flight_and_a_rerun_completes(tiny_model, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03", "C02", "C03"), sites=(1, 2, 3), seed=4)  # 12 fields
    command = ["classify", str(plate), "--model", str(tiny_model), "--out", str(out), "--chunk-fields", "2", "--json"]
    run = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not list((out / ".partial").glob("chunk-*.parquet")) and time.time() < deadline and run.poll() is None:
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and 2 <= summary["counts"]["classified"] < 12 and "stopped" in stderr
    assert len(read_csv(out / "fields.csv")) == summary["counts"]["classified"]  # what is done is readable
    rerun = subprocess.run([sys.executable, "-c", KILLABLE, *command], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["counts"]["skipped_done"] == summary["counts"]["classified"]
    assert len(read_csv(out / "fields.csv")) == 12 and not (out / ".partial").exists()


def test_shards_split_by_well_and_site_and_cover_the_plate(classifier, tmp_path):
    plate = tmp_path / "plate"
    write_plate(plate, wells=("B02", "B03", "C02", "C03"), sites=(1, 2, 3))
    seen = []
    for index in range(3):
        summary = classify_plate(plate, classifier, tmp_path / f"shard{index}", shard=(index, 3))
        rows = read_csv(tmp_path / f"shard{index}" / "fields.csv")
        assert summary["shard"] == f"{index}/3" and len(rows) == summary["counts"]["classified"]
        assert all(shard_of(r["Metadata_Well"], int(r["Metadata_Site"]), 3) == index for r in rows)
        seen += [(r["Metadata_Well"], r["Metadata_Site"]) for r in rows]
    assert sorted(seen) == sorted({(w, str(s)) for w in ("B02", "B03", "C02", "C03") for s in (1, 2, 3)})
    assert shard_of("B02", 1, 3) == shard_of("B02", 1, 3)  # no salt, no discovery order
    with pytest.raises(ValueError, match="I from 0 to N-1"):
        classify_plate(plate, classifier, tmp_path / "bad", shard=(3, 3))


def test_a_bbbc021_plate_with_its_moa_table_gets_the_annotated_class_and_right_or_wrong(classifier, tmp_path):
    """The MoA table beside the image table names each treatment's class: Metadata_MoA, Classify_Correct;
    the near-chance rule is recorded in summary.json."""
    from appliance.layouts.bbbc021 import load_fields
    from appliance.synth import write_dataset

    write_dataset(tmp_path / "data", plates=1, fields_per_class=1, size=(128, 128), seed=3)
    truth = {(f.well, f.site): f.moa for f in load_fields(tmp_path / "data")}
    plate = next(p for p in (tmp_path / "data").glob("Week*/*") if p.is_dir())
    summary = classify_plate(plate, classifier, tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "fields.csv")
    assert len(rows) == len(truth) == 13
    for row in rows:
        moa = truth[(row["Metadata_Well"], int(row["Metadata_Site"]))]
        assert row["Metadata_MoA"] == moa
        assert row["Classify_Correct"] == str(row["Classify_Class"] == moa)
        assert row["Classify_LowConfidence"] == str(float(row["Classify_Confidence"]) < 2 / len(LABELS))
    assert summary["columns"]["low_confidence_below"] == pytest.approx(2 / len(LABELS), abs=1e-6)
    assert pq.read_table(tmp_path / "out" / "fields.parquet").column("Classify_Correct").type == "bool"
    treatments = read_csv(tmp_path / "out" / "treatments.csv")
    assert {t["Metadata_MoA"] for t in treatments} <= set(truth.values())

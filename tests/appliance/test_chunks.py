"""Committed chunks: names that never collide, damaged chunks and results set aside and redone, synced
commits, and one classify run at a time per results folder."""

import json
import os
import subprocess
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from appliance.chunks import PARTIAL, ChunkStore
from appliance.classify import LOCK, classify_plate
from appliance.cli import app
from appliance.files import FolderBusy, lock_folder
from appliance.inference import Classifier
from appliance.result_files import read_results
from tests.appliance.test_result_files import folder_bytes, tmpfs
from tests.conftest import truncate, write_plate

KEY = {"plate": "P1", "precision": "f32", "embeddings": False}


def rows(wells, site=1) -> list[dict]:
    return [{"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": site} for well in wells]


def committed_wells(out: Path) -> list[str]:
    return sorted(row["Metadata_Well"] for row in ChunkStore(out, KEY).records)


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return Classifier(tiny_model)


def test_a_chunk_removed_then_a_rerun_overwrites_no_committed_chunk(tmp_path):
    first = ChunkStore(tmp_path, KEY)
    for well in ("B02", "B03", "B04"):
        first.commit(rows([well]), [None])
    first.chunks()[0].unlink()  # removed by hand: two chunks left, so "count + 1" would be the third's name
    ChunkStore(tmp_path, KEY).commit(rows(["B05"]), [None])
    assert committed_wells(tmp_path) == ["B03", "B04", "B05"]


def test_two_stores_writing_at_once_keep_each_others_chunks(tmp_path):
    one, two = ChunkStore(tmp_path, KEY), ChunkStore(tmp_path, KEY)
    one.commit(rows(["B02"]), [None])
    two.commit(rows(["C02"]), [None])
    one.commit(rows(["B03"]), [None])
    assert committed_wells(tmp_path) == ["B02", "B03", "C02"]


def test_a_commit_syncs_the_chunk_and_the_folders_it_is_in(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("appliance.files.os.fsync", lambda fd: synced.append(Path(f"/proc/self/fd/{fd}").resolve()))
    store = ChunkStore(tmp_path, KEY)
    assert tmp_path in synced  # .partial's entry in OUT
    synced.clear()
    store.commit(rows(["B02"]), [None])
    chunk = store.chunks()[0]
    assert synced[0].name.startswith(f".{chunk.name}.tmp") and synced[1] == tmp_path / PARTIAL


def stopped_run(plate: Path, classifier, out: Path, after: int) -> dict:
    stop = threading.Event()
    return classify_plate(
        plate,
        classifier,
        out,
        stop=stop,
        chunk_fields=2,
        readers=1,
        progress=lambda done, total, rate: done >= after and stop.set(),
    )


def test_a_damaged_chunk_is_named_set_aside_and_its_fields_redone(classifier, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03", "B04", "C02"), sites=(1, 2, 3))  # 12 fields
    first = stopped_run(plate, classifier, out, after=3)
    chunks = sorted((out / PARTIAL).glob("chunk-*.parquet"))
    assert first["interrupted"] and len(chunks) >= 2
    lost = pq.read_metadata(chunks[0]).num_rows
    truncate(chunks[0])  # what a power cut before the data reached the disk leaves

    second = classify_plate(plate, classifier, out)
    assert len(second["set_aside"]) == 1 and second["set_aside"][0].startswith(f"{chunks[0]}: unreadable (")
    assert not (out / PARTIAL).exists()  # the set is whole: the chunk set aside goes with .partial
    assert second["counts"]["skipped_done"] == first["counts"]["classified"] - lost
    assert second["counts"]["classified"] == 12 and not second["interrupted"]


def test_a_damaged_chunk_is_renamed_not_deleted(classifier, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03", "B04", "C02"), sites=(1, 2, 3))
    stopped_run(plate, classifier, out, after=3)
    chunk = sorted((out / PARTIAL).glob("chunk-*.parquet"))[0]
    chunk.write_bytes(b"not parquet")
    store = ChunkStore(out, json.loads((out / PARTIAL / "run-key.json").read_text()))  # as the rerun opens it
    (said,) = store.set_aside
    assert said.startswith(f"{chunk}: unreadable (") and said.endswith(
        f"set aside as {chunk.name}.damaged, its fields redone"
    )
    assert (out / PARTIAL / f"{chunk.name}.damaged").read_bytes() == b"not parquet" and not chunk.exists()


def test_a_damaged_final_fields_parquet_is_set_aside_redone_once_and_said(classifier, tiny_model, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03"), sites=(1, 2))
    classify_plate(plate, classifier, out)
    truncate(out / "fields.parquet")

    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"{out / 'fields.parquet'}: unreadable (" in said and "set aside as fields.parquet.damaged" in said
    second = json.loads(result.stdout)
    assert second["set_aside"][0].startswith(f"{out / 'fields.parquet'}: unreadable (")
    assert (out / "fields.parquet.damaged").is_file()
    assert (second["counts"]["classified"], second["counts"]["skipped_done"]) == (4, 0)
    third = classify_plate(plate, classifier, out)  # the set is whole again: nothing redone, nothing set aside
    assert third == {**second, "nothing_to_do": True}
    assert sorted(p.name for p in out.glob("*.damaged*")) == ["fields.parquet.damaged"]


def test_a_second_classify_on_one_folder_is_refused_with_exit_2(tiny_model, tmp_path):
    plate, out = tmp_path / "plate", tmp_path / "out"
    write_plate(plate, wells=("B02",), sites=(1,))
    out.mkdir()
    with lock_folder(out, LOCK, "another classify run"):  # as a first run holds it while it classifies
        with pytest.raises(FolderBusy, match="another classify run is writing to this folder"):
            classify_plate(plate, Classifier(tiny_model), out)
        result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model), "--out", str(out)])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert f"{out}: another classify run is writing to this folder" in " ".join(result.output.split())
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written
    assert classify_plate(plate, Classifier(tiny_model), out)["counts"]["classified"] == 1  # released


def test_a_forced_rerun_on_a_really_full_disk_leaves_the_earlier_results_whole(tiny_model, tmp_path):
    """The issue's case on a 2 MiB tmpfs: a --force rerun (other settings) over finished results runs out of space."""
    plate = tmp_path / "plate"
    write_plate(plate, wells=("B02", "B03"), sites=(1, 2))
    disk = tmpfs(tmp_path / "disk", "2m")
    try:
        out = disk / "out"
        command = ["classify", str(plate), "--model", str(tiny_model), "--out", str(out), "--quiet"]
        assert CliRunner().invoke(app, command).exit_code == 0
        before = folder_bytes(out)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 48 * 1024))  # room for the chunks, not for a new set too
        result = CliRunner().invoke(app, [*command, "--force", "--embeddings", "--chunk-fields", "4"])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "No space left on device" in said, said
        assert said.endswith("the results already there are whole and unchanged"), said
        assert folder_bytes(out) == before and read_results(out).run["run_key"]["embeddings"] is False
    finally:
        subprocess.run(["umount", str(disk)], check=True)

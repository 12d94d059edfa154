"""Watch mode: plates classified once complete, exactly once across restarts, failures bounded, SIGTERM clean.

Most tests drive Watcher.poll with their own clock; the slow-writer test and the SIGTERM test run
the real loop against real time (settle period 1 s).
"""

import csv
import errno
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from appliance.classify import classify_plate
from appliance.cli import app
from appliance.inference import Classifier
from appliance.watch import LEDGER, Watcher, WatchError, WatchOptions, snapshot
from tests.conftest import write_plate

FAST = WatchOptions(settle=1.0, poll=0.1, attempts=3, retry_delay=5.0)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def ledger(out: Path) -> dict:
    return json.loads((out / LEDGER).read_text())["plates"] if (out / LEDGER).exists() else {}


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return Classifier(tiny_model)


@pytest.fixture
def calls(monkeypatch):
    """Every classify_plate call the watcher makes: (plate name, snapshot of the plate at that moment)."""
    seen = []

    def counting(plate_dir, *args, **kwargs):
        seen.append((Path(plate_dir).name, snapshot(plate_dir), time.monotonic()))
        return classify_plate(plate_dir, *args, **kwargs)

    return seen, counting


def broken_and_good(tmp_path: Path) -> tuple[Path, Path]:
    """An inbox with a plate that cannot be classified (no images) and a good one; and a results folder."""
    inbox = tmp_path / "inbox"
    (inbox / "Broken").mkdir(parents=True)
    (inbox / "Broken" / "notes.txt").write_text("no images here")
    write_plate(inbox / "Good", wells=("B02",), sites=(1,))
    return inbox, tmp_path / "out"


def slow_copy(source: Path, target: Path, pause: float = 0.08, chunks: int = 3) -> None:
    """An imager's pace: one file after another, each written in pieces with pauses in between."""
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        data = path.read_bytes()
        step = len(data) // chunks + 1
        with open(target / path.name, "wb") as f:
            for start in range(0, len(data), step):
                time.sleep(pause)
                f.write(data[start : start + step])
                f.flush()


def test_a_slowly_written_plate_is_classified_once_after_the_writer_finishes(tmp_path, classifier, calls):
    source, inbox, out = tmp_path / "source" / "Week1_22123", tmp_path / "inbox", tmp_path / "out"
    write_plate(source, wells=("B02", "B03"), sites=(1, 2))
    inbox.mkdir()
    seen, counting = calls
    finished = {}

    def writer():
        slow_copy(source, inbox / "Week1_22123")
        finished["at"] = time.monotonic()

    stop = threading.Event()
    watching = Watcher(inbox, out, classifier, FAST, stop=stop, log=lambda line: None, classify=counting)
    watcher = threading.Thread(target=watching.run)
    watcher.start()
    try:
        copier = threading.Thread(target=writer)
        copier.start()
        copier.join()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ledger(out).get("Week1_22123", {}).get("status") != "done":
            time.sleep(0.1)
        time.sleep(0.5)  # a few more polls: the plate must not be classified again
    finally:
        stop.set()
        watcher.join(timeout=30)
        watching.close()

    assert not watcher.is_alive()
    assert [name for name, _, _ in seen] == ["Week1_22123"]
    _, files, called_at = seen[0]
    # The watcher reads its clock at the start of a poll, so it may date the last change up to a poll early.
    assert called_at >= finished["at"] + FAST.settle - FAST.poll
    assert files == snapshot(inbox / "Week1_22123")  # every file whole when it was read
    entry = ledger(out)["Week1_22123"]
    assert (entry["status"], entry["attempts"], entry["classified"], entry["failed_fields"]) == ("done", 1, 4, 0)
    assert len(rows(out / "Week1_22123" / "fields.csv")) == 4
    assert rows(out / "Week1_22123" / "failures.csv") == []


def test_the_settle_period_restarts_with_every_change(tmp_path, classifier, calls):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    written = write_plate(inbox / "P1", wells=("B02",), sites=(1,))
    seen, counting = calls
    with Watcher(
        inbox, out, classifier, WatchOptions(settle=10, marker="DONE"), log=lambda line: None, classify=counting
    ) as watcher:
        assert watcher.poll(0) == [] and watcher.poll(9) == []
        with open(written[("B02", 1)]["DAPI"], "ab") as f:  # the imager appends to a file
            f.write(b"\0")
        assert watcher.poll(9.5) == [] and watcher.poll(19) == []
        assert watcher.poll(19.6) == ["P1"]
        assert watcher.poll(100) == []
    assert [name for name, _, _ in seen] == ["P1"]


def test_a_marker_file_completes_a_plate_and_settle_zero_waits_for_it(tmp_path, classifier, calls):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "P1", wells=("B02",), sites=(1,))
    seen, counting = calls
    with Watcher(
        inbox, out, classifier, WatchOptions(settle=0, marker="plate.done"), log=lambda line: None, classify=counting
    ) as watcher:
        assert [watcher.poll(t) for t in (0, 100, 10_000)] == [[], [], []]  # no marker, no settle rule: wait
        (inbox / "P1" / "plate.done").write_text("")
        assert watcher.poll(10_001) == []  # the marker is new: one more poll to see nothing still changes
        assert watcher.poll(10_002) == ["P1"]
    assert ledger(out)["P1"]["status"] == "done"


def test_a_restarted_watcher_never_classifies_a_plate_again(tmp_path, classifier, calls):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "P1", wells=("B02",), sites=(1,))
    seen, counting = calls
    options = WatchOptions(settle=1)
    with Watcher(inbox, out, classifier, options, log=lambda line: None, classify=counting) as first:
        with pytest.raises(WatchError, match="another watcher"):
            Watcher(inbox, out, classifier, options)
        assert first.poll(0) == [] and first.poll(2) == ["P1"]
    write_plate(inbox / "P2", wells=("B02",), sites=(1,), seed=1)
    with Watcher(inbox, out, classifier, options, log=lambda line: None, classify=counting) as second:
        assert second.poll(0) == [] and second.poll(2) == ["P2"]
    assert [name for name, _, _ in seen] == ["P1", "P2"]
    assert {name: (e["status"], e["attempts"]) for name, e in ledger(out).items()} == {
        "P1": ("done", 1),
        "P2": ("done", 1),
    }


def test_files_arriving_after_a_plate_was_classified_are_reported_once(tmp_path, classifier, calls):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "P1", wells=("B02",), sites=(1,))
    seen, counting = calls
    lines = []
    with Watcher(inbox, out, classifier, WatchOptions(settle=1), log=lines.append, classify=counting) as watcher:
        assert watcher.poll(0) == [] and watcher.poll(2) == ["P1"]
        write_plate(inbox / "P1", wells=("B03",), sites=(1,), seed=1)  # the imager was not finished after all
        assert watcher.poll(3) == [] and watcher.poll(10) == []
    assert [name for name, _, _ in seen] == ["P1"]
    assert sum("files changed after the plate was classified" in line for line in lines) == 1


def test_a_watcher_killed_inside_a_plate_counts_a_failed_try_and_retries(tmp_path, classifier, calls):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "P1", wells=("B02",), sites=(1,))
    out.mkdir()
    (out / LEDGER).write_text(json.dumps({"plates": {"P1": {"status": "running", "attempts": 1}}}))
    seen, counting = calls
    with Watcher(inbox, out, classifier, WatchOptions(settle=1), log=lambda line: None, classify=counting) as w:
        assert ledger(out)["P1"]["status"] == "failed" and "killed" in ledger(out)["P1"]["error"]
        assert w.poll(0) == [] and w.poll(2) == ["P1"]
    assert (ledger(out)["P1"]["status"], ledger(out)["P1"]["attempts"]) == ("done", 2)


def test_a_failing_plate_is_reported_and_tried_a_bounded_number_of_times(tmp_path, classifier, calls):
    inbox, out = broken_and_good(tmp_path)
    seen, counting = calls
    lines = []
    with Watcher(
        inbox, out, classifier, WatchOptions(settle=1, attempts=3, retry_delay=10), log=lines.append, classify=counting
    ) as watcher:
        for t in range(0, 100, 2):
            watcher.poll(t)
    assert [name for name, _, _ in seen].count("Broken") == 3
    assert [name for name, _, _ in seen].count("Good") == 1
    entry = ledger(out)["Broken"]
    assert (entry["status"], entry["attempts"]) == ("failed", 3)
    assert "PlateError" in entry["error"] and "no plate layout recognised" in entry["error"]
    failed = [line for line in lines if line.startswith("Broken: failed (attempt")]
    assert len(failed) == 3 and "retrying in 10 s" in failed[0] and "giving up" in failed[2]
    assert sum("not tried again" in line for line in lines) == 1
    assert ledger(out)["Good"]["status"] == "done"


def test_a_quiet_watcher_still_tells_its_problems(tmp_path, classifier, calls):
    """watch --quiet silences progress (log), never a failing plate (warn)."""
    inbox, out = broken_and_good(tmp_path)
    _, counting = calls
    progress, problems = [], []
    options = WatchOptions(settle=1, attempts=1)
    with Watcher(inbox, out, classifier, options, log=progress.append, warn=problems.append, classify=counting) as w:
        for t in range(0, 10, 2):
            w.poll(t)
    assert any(line.startswith("Broken: failed (attempt 1 of 1)") for line in problems)
    assert any(line.startswith("Good: 1 fields classified") for line in progress)
    assert not any("Broken" in line and "failed" in line for line in progress)


def test_stop_finishes_the_current_batch_and_the_plate_is_done_after_a_restart(tmp_path, classifier):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    wells = ("B02", "B03", "C02", "C03", "D02", "D03")
    write_plate(inbox / "P1", wells=wells, sites=(1, 2, 3, 4))  # 24 fields: more than can be in flight at once
    stop = threading.Event()

    def stopping_after_first_batch(*args, **kwargs):
        return classify_plate(*args, progress=lambda *done_total_rate: stop.set(), **kwargs)

    with Watcher(
        inbox,
        out,
        classifier,
        WatchOptions(settle=1),
        stop=stop,
        log=lambda line: None,
        classify=stopping_after_first_batch,
    ) as watcher:
        assert watcher.poll(0) == [] and watcher.poll(2) == []
    assert (ledger(out)["P1"]["status"], ledger(out)["P1"]["attempts"]) == ("interrupted", 0)
    assert 1 <= len(rows(out / "P1" / "fields.csv")) < 24  # the fields in flight were finished and written

    with Watcher(inbox, out, classifier, WatchOptions(settle=1), log=lambda line: None) as watcher:
        assert watcher.poll(0) == [] and watcher.poll(2) == ["P1"]
    assert (ledger(out)["P1"]["status"], ledger(out)["P1"]["attempts"]) == ("done", 1)
    assert len(rows(out / "P1" / "fields.csv")) == 24


SLOW_MODEL_WATCH = textwrap.dedent("""
    import sys, time
    from appliance.inference import Classifier
    from appliance.cli import app
    stream = Classifier.infer_stream
    def slow_stream(self, items, release):  # a slow model, so that SIGTERM lands inside the plate
        def slowly(items):
            for item in items:
                time.sleep(0.5)
                yield item
        return stream(self, slowly(items), release)
    Classifier.infer_stream = slow_stream
    app(sys.argv[1:], prog_name="mcnn-appliance")
""")


def test_sigterm_finishes_the_current_field_and_exits_cleanly(tmp_path, tiny_model):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    # 24 fields at 0.5 s each: SIGTERM lands while more fields wait than can be in flight.
    write_plate(inbox / "P1", wells=("B02", "B03", "C02", "C03", "D02", "D03"), sites=(1, 2, 3, 4))
    command = [
        sys.executable,
        "-c",
        SLOW_MODEL_WATCH,
        "watch",
        str(inbox),
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--settle",
        "0.5",
        "--poll",
        "0.1",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ledger(out).get("P1"):
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        assert ledger(out)["P1"]["status"] == "running"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "SIGTERM: stopping after the current field" in stderr and "stopped" in stderr
    assert (ledger(out)["P1"]["status"], ledger(out)["P1"]["attempts"]) == ("interrupted", 0)
    assert len(rows(out / "P1" / "fields.csv")) < 24


def test_watch_cli_refuses_what_it_cannot_watch(tmp_path, tiny_model):
    runner = CliRunner()
    result = runner.invoke(app, ["watch", "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout
    options = {name for param in typer.main.get_command(app).commands["watch"].params for name in param.opts}
    assert {"--settle", "--quiet", "--marker", "--poll", "--attempts"} <= options
    result = runner.invoke(
        app, ["watch", str(tmp_path / "missing"), "--model", str(tiny_model), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "the inbox is not a folder" in result.output
    (tmp_path / "inbox").mkdir()
    result = runner.invoke(
        app,
        ["watch", str(tmp_path / "inbox"), "--model", str(tiny_model), "--out", str(tmp_path / "inbox" / "results")],
    )
    assert result.exit_code == 2 and "must not be inside the inbox" in result.output
    result = runner.invoke(
        app, ["watch", str(tmp_path / "inbox"), "--model", str(tmp_path), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "model.xml" in result.output


def test_a_damaged_ledger_stops_the_watcher_with_a_clear_error(tmp_path, classifier):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LEDGER).write_text('{"plates": {"P1": ')  # cut short by hand
    with pytest.raises(WatchError, match="not a watch ledger"):
        Watcher(tmp_path / "inbox", tmp_path / "out", classifier)
    (tmp_path / "out" / LEDGER).unlink()
    with Watcher(tmp_path / "inbox", tmp_path / "out", classifier) as watcher:  # the lock was released
        assert watcher.poll(0) == []


def test_the_inbox_config_sets_how_plates_are_read_and_the_command_line_wins(tmp_path, classifier):
    """An imager's outbox set up once: mcnn-watch.toml names the layout and channels; a z-stacked Harmony
    plate is max-projected as it says; what the command line gives wins over the file."""
    from appliance.watch import plate_options
    from tests.appliance.layouts import write_harmony
    from tests.appliance.layouts.same_fields import random_images

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (inbox / "mcnn-watch.toml").write_text(
        'layout = "harmony"\nchannels = "DAPI=HOECHST 33342,Tubulin=Alexa 488,Actin=Alexa 568"\nplane = 2\n'
        'precision = "bf16"\n'
    )
    assert plate_options(inbox, {"precision": "f32", "embeddings": True})[0] == "f32"
    precision, options = plate_options(inbox, {"project": "max"})
    assert precision == "bf16" and options["plane"] == 2 and options["project"] == "max"
    del options["plane"]  # a projection excludes a plane: a user gives --project where the file says no plane
    write_harmony.write_plate(inbox / "P1", random_images(wells=("B02",), sites=(1,), shape=(3, 128, 128)))
    (inbox / "P1" / "COMPLETE").touch()
    stop = threading.Event()
    watching = Watcher(
        inbox, out, classifier, replace(FAST, settle=0.0, classify=options), stop=stop, log=lambda line: None
    )
    watcher = threading.Thread(target=watching.run)
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ledger(out).get("P1", {}).get("status") != "done":
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(timeout=30)
        watching.close()
    (row,) = rows(out / "P1" / "fields.csv")
    assert (row["Metadata_Layout"], row["Metadata_Source"]) == ("harmony", "max projection of 3 planes")


def test_a_bad_inbox_config_is_refused_naming_the_file_and_key(tmp_path):
    from appliance.watch import read_watch_config

    (tmp_path / "mcnn-watch.toml").write_text('layout = "harmony"\nplanes = 2\n')
    with pytest.raises(WatchError, match=r"mcnn-watch.toml: unknown key 'planes'; the keys are layout, "):
        read_watch_config(tmp_path)
    (tmp_path / "mcnn-watch.toml").write_text("plane = '2'\n")
    with pytest.raises(WatchError, match=r"mcnn-watch.toml: plane = '2' should be a int"):
        read_watch_config(tmp_path)
    (tmp_path / "mcnn-watch.toml").write_text('platemap = "map.csv"\nembeddings = true\n')
    assert read_watch_config(tmp_path) == {"platemap": tmp_path / "map.csv", "embeddings": True}


def test_a_full_results_disk_is_not_a_try_of_the_plate(tmp_path, classifier):
    """Found by benchmarks/soak_watch.py: a results disk full for longer than the tries gave plates up."""
    from appliance.files import WriteError

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "Plate", wells=("B02",), sites=(1,))
    full_for = [5]  # the next 5 calls find the disk full

    def filling(plate_dir, *args, **kwargs):
        if full_for[0]:
            full_for[0] -= 1
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as exc:
                raise WriteError(f"{plate_dir}/plate_map.png: cannot write") from exc
        return classify_plate(plate_dir, *args, **kwargs)

    lines = []
    options = WatchOptions(settle=1, attempts=2, retry_delay=3)
    with Watcher(inbox, out, classifier, options, log=lines.append, classify=filling) as watcher:
        for t in range(0, 40):
            watcher.poll(t)
    assert sum("the results disk is full" in line for line in lines) == 5
    entry = ledger(out)["Plate"]
    assert (entry["status"], entry["attempts"], entry["classified"]) == ("done", 1, 1)


def test_a_ledger_that_cannot_be_written_does_not_stop_the_watcher(tmp_path, classifier, calls, monkeypatch):
    """The ledger's disk full for a while: the plate is classified once, said once, and recorded when it can be."""
    import appliance.watch
    from appliance.files import WriteError

    seen, counting = calls
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "Plate", wells=("B02",), sites=(1,))
    write_json, failing = appliance.watch.write_json, [True]

    def full_disk(path, data):
        if failing[0]:
            raise WriteError(f"{path}: cannot write (No space left on device); the file there before is unchanged")
        return write_json(path, data)

    monkeypatch.setattr(appliance.watch, "write_json", full_disk)
    lines = []
    with Watcher(inbox, out, classifier, FAST, log=lines.append, classify=counting) as watcher:
        for t in range(4):
            watcher.poll(t)
        assert [name for name, *_ in seen] == ["Plate"] and not (out / LEDGER).exists()
        assert sum("No space left on device" in line for line in lines) == 1
        failing[0] = False
        watcher.poll(5)
    assert ledger(out)["Plate"]["status"] == "done"
    assert any("is written again" in line for line in lines)
    with Watcher(inbox, out, classifier, FAST, log=lines.append, classify=counting) as watcher:
        watcher.poll(10)
    assert len(seen) == 1

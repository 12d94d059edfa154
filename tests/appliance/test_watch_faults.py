"""The watcher against what goes wrong around it (issue 18): a plate moved away while it is classified,
a plate or inbox it cannot list (a real permission denial: when tests run as root, as root without
its file-permission capabilities), a ledger that is not one."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from appliance.classify import classify_plate
from appliance.cli import app
from appliance.inference import Classifier
from appliance.watch import LEDGER, Watcher, WatchError, WatchOptions
from tests.appliance.unprivileged import as_unprivileged, open_to_all
from tests.conftest import write_plate

ROOT = Path(__file__).resolve().parents[2]


def ledger(out: Path) -> dict:
    return json.loads((out / LEDGER).read_text())["plates"]


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return Classifier(tiny_model)


def test_a_plate_moved_away_during_classification_is_interrupted_not_done(tmp_path, classifier):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_plate(inbox / "P1", wells=("B02", "B03", "C02", "C03"), sites=(1, 2, 3))  # 12 fields
    moved = tmp_path / "elsewhere"

    def moving_it_away(plate_dir, *args, **kwargs):
        def progress(done, total, rate=0.0):
            if done and plate_dir.exists():
                plate_dir.rename(moved)  # a user renames the plate while the watcher reads it

        return classify_plate(plate_dir, *args, progress=progress, readers=1, chunk_fields=1, **kwargs)

    lines = []
    with Watcher(inbox, out, classifier, WatchOptions(settle=1), log=lines.append, classify=moving_it_away) as w:
        assert w.poll(0) == [] and w.poll(2) == []
    entry = ledger(out)["P1"]
    assert (entry["status"], entry["attempts"]) == ("interrupted", 0)
    assert "moved or removed during classification" in entry["error"]
    assert sum("moved or removed during classification" in line for line in lines) == 1
    assert not any("fields classified" in line for line in lines)

    moved.rename(inbox / "P1")  # it comes back: classified whole, then done
    with Watcher(inbox, out, classifier, WatchOptions(settle=1), log=lines.append) as w:
        assert w.poll(10) == [] and w.poll(12) == ["P1"]
    entry = ledger(out)["P1"]
    assert (entry["status"], entry["classified"], entry["failed_fields"]) == ("done", 12, 0)


WATCH_UNPRIVILEGED = textwrap.dedent("""
    import sys
    from pathlib import Path
    from appliance.watch import Watcher, WatchOptions

    def classify(plate_dir, classifier, out_dir, **options):
        print("classified", plate_dir.name, flush=True)
        return {"counts": {"classified": 1, "failed": 0}}

    with Watcher(Path(sys.argv[1]), Path(sys.argv[2]), None, WatchOptions(settle=1), log=print, classify=classify) as w:
        for now in (0, 2, 4, 6, 8):
            w.poll(now)
""")


def test_a_plate_that_cannot_be_listed_is_in_the_ledger_and_said_once(reachable):
    inbox, out = reachable / "inbox", reachable / "out"
    write_plate(inbox / "Good", wells=("B02",), sites=(1,))
    write_plate(inbox / "Locked", wells=("B02",), sites=(1,))
    write_plate(inbox / "Half" / "TimePoint_1", wells=("B02",), sites=(1,))
    (inbox / "Half" / "notes.txt").write_text("the images are in TimePoint_1")
    open_to_all(reachable)
    (inbox / "Locked").chmod(0)  # the plate folder itself
    (inbox / "Half" / "TimePoint_1").chmod(0)  # os.walk skipped this one silently: the plate looked complete
    done = subprocess.run(
        as_unprivileged([sys.executable, "-c", WATCH_UNPRIVILEGED, str(inbox), str(out)]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "classified Good" in lines and not any(line.startswith("classified Locked") for line in lines)
    assert not any(line.startswith("classified Half") for line in lines)
    for plate, folder in (("Locked", inbox / "Locked"), ("Half", inbox / "Half" / "TimePoint_1")):
        said = [line for line in lines if line.startswith(f"{plate}:")]
        assert len(said) == 1, lines  # five polls, one message
        assert f"cannot list {folder}: Permission denied" in said[0]
        entry = ledger(out)[plate]
        assert entry["status"] == "unreadable" and "Permission denied" in entry["error"]


def test_an_unreadable_inbox_is_said_once_per_change(tmp_path, classifier, monkeypatch):
    import appliance.watch as watch

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    real = watch.inbox_plates
    denied = {"now": True}

    def listing(folder):
        if denied["now"]:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(watch, "inbox_plates", listing)
    lines = []
    with Watcher(inbox, out, classifier, WatchOptions(settle=1, poll=0.5), log=lines.append) as w:
        for now in range(20):  # ten seconds of polls twice a second
            w.poll(now / 2)
        denied["now"] = False
        w.poll(11)
        denied["now"] = True
        w.poll(12)
        w.poll(13)
    assert [line.split(":")[0] for line in lines] == [
        f"cannot read the inbox {inbox.resolve()}",
        f"the inbox {inbox.resolve()} is readable again",
        f"cannot read the inbox {inbox.resolve()}",
    ]


def test_a_ledger_entry_without_a_status_is_not_a_watch_ledger(tmp_path, tiny_model):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LEDGER).write_text(json.dumps({"plates": {"P1": {"attempts": 1}}}))
    with pytest.raises(WatchError, match=r"watch-ledger.json: not a watch ledger \(plate 'P1' has no status\)"):
        Watcher(tmp_path / "inbox", tmp_path / "out", None)
    result = CliRunner().invoke(
        app, ["watch", str(tmp_path / "inbox"), "--model", str(tiny_model), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "not a watch ledger" in result.output and LEDGER in result.output
    assert "Traceback" not in result.output

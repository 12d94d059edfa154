"""Plates, plate maps and paths as a clumsy user or an attacker gives them (issue 18): a plate that
cannot be listed (a real denial, as `nobody` when tests run as root), a FIFO where a CSV should be,
square brackets in paths, links out of the plate, files that are not what their names say."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from appliance.cli import app
from tests.appliance.unprivileged import as_unprivileged, open_folder, open_to_all
from tests.conftest import write_plate

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from appliance.cli import app; app(sys.argv[1:], prog_name='mcnn-appliance')"


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def reachable():
    folder = open_folder()
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o777)
    shutil.rmtree(folder)


def test_classify_reports_a_plate_it_cannot_list_and_classifies_the_others(reachable, tiny_model):
    plates, model, out = reachable / "plates", reachable / "model", reachable / "out"
    write_plate(plates / "P1", wells=("B02",), sites=(1,))
    write_plate(plates / "P2", wells=("B02",), sites=(1,))
    write_plate(plates / "P3", wells=("B02",), sites=(1,))
    shutil.copytree(tiny_model, model)
    open_to_all(reachable)
    (plates / "P2").chmod(0)
    done = subprocess.run(
        as_unprivileged([sys.executable, "-c", CLI, "classify", str(plates), "--model", str(model), "--out", str(out)]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # some of it failed: not 0, and not "nothing ran"
    assert "Traceback" not in done.stderr
    assert f"{plates / 'P2'}: cannot read it (Permission denied)" in done.stderr
    assert len(rows(out / "P1" / "fields.csv")) == 1 and len(rows(out / "P3" / "fields.csv")) == 1
    assert not (out / "P2").exists()


@pytest.mark.parametrize("name", ["a[/]b", "Plate [rep1]", "[bold]x[/bold]"])
def test_square_brackets_in_a_path_are_printed_as_they_are(tmp_path, tiny_model, name):
    plate = tmp_path / name
    write_plate(plate, wells=("B02",), sites=(1,))
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert f"{plate.name}: 1 fields classified" in result.output
    assert f"-> {plate.parent / (plate.name + '-results')}" in result.output
    result = CliRunner().invoke(app, ["classify", str(tmp_path / name / "missing"), "--model", str(tiny_model)])
    assert result.exit_code == 2 and f"error: {tmp_path / name / 'missing'}: not a folder" in result.output


def test_a_platemap_that_is_a_fifo_is_refused_without_opening_it(tmp_path, tiny_model):
    plate, fifo = tmp_path / "P1", tmp_path / "platemap.csv"
    write_plate(plate, wells=("B02",), sites=(1,))
    os.mkfifo(fifo)  # nothing ever writes to it: reading it would wait for ever
    done = subprocess.run(
        [sys.executable, "-c", CLI, "classify", str(plate), "--model", str(tiny_model), "--platemap", str(fifo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{fifo}: not a regular file but a FIFO; refused" in done.stderr
    for kind, path in (("a folder", tmp_path / "P1"), ("a character device", Path("/dev/null"))):
        result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model), "--platemap", str(path)])
        assert result.exit_code == 2 and f"{path}: not a regular file but {kind}" in result.output


STUCK_BEFORE_CLASSIFYING = textwrap.dedent("""
    import sys
    import appliance.classify
    from appliance.cli import app

    fifo = sys.argv.pop(1)

    def stuck(*args, **kwargs):  # a read that never returns (a FIFO on a plate share) while fields are found
        print("finding fields", file=sys.stderr, flush=True)
        open(fifo).read()

    appliance.classify.discover_fields = stuck
    app(sys.argv[1:], prog_name="mcnn-appliance")
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_command_that_has_not_started_classifying(tmp_path, tiny_model, signum):
    plate, fifo = tmp_path / "P1", tmp_path / "stuck"
    write_plate(plate, wells=("B02",), sites=(1,))
    os.mkfifo(fifo)
    command = [sys.executable, "-c", STUCK_BEFORE_CLASSIFYING, str(fifo), "classify", str(plate)]
    process = subprocess.Popen(
        [*command, "--model", str(tiny_model), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr.readline().strip() == "finding fields"
        time.sleep(0.2)  # inside open()
        sent = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)  # before: the graceful stop waited for ever
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - sent < 30
    assert process.returncode == 2, stderr
    assert f"{signum.name} before classification started: stopped, nothing of it classified" in stderr
    assert "Traceback" not in stderr

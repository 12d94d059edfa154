"""`mcnn-appliance report RESULTS_DIR...`: one page over a screen's plates, read back from their folders."""

from __future__ import annotations

import re
from collections import Counter

from typer.testing import CliRunner

from appliance.cli import app
from appliance.result_files import write_results
from appliance.results import PlateResults
from appliance.screen_report import write_screen_report
from tests.appliance.test_results import LABELS, made_results

COMPOUNDS = {"B02": "taxol", "B03": "DMSO", "B04": "cytochalasin B", "B05": "Nocodazole"}
# plate -> (classified on, seed, failures)
PLATES = {
    "P1": ("2026-11-27T09:00:00+00:00", 1, []),
    "P2": ("2026-11-25T09:00:00+00:00", 2, []),
    "P3": ("2026-11-26T09:00:00+00:00", 3, [("B02", 3, "B02_s3_w1.tif", "truncated TIFF")]),
}


def write_plate_results(folder, plate: str) -> PlateResults:
    finished, seed, failures = PLATES[plate]
    made = made_results(folder, list(COMPOUNDS), compounds=COMPOUNDS, seed=seed, failures=failures)
    fields = [{**f, "Metadata_Plate": plate} for f in made.fields]
    run = {**made.run, "plate": plate, "finished": finished}
    results = PlateResults(folder, made.labels, made.channels, fields, made.failures, run)
    write_results(results)
    return results


def test_screen_report_over_plates(tmp_path):
    plates = {name: write_plate_results(tmp_path / "results" / name, name) for name in PLATES}
    (tmp_path / "results" / "broken" / ".partial").mkdir(parents=True)  # a classify that never finished
    (tmp_path / "results" / "notes").mkdir()  # no results at all: not a plate
    out = tmp_path / "screen.html"
    screen = write_screen_report([tmp_path / "results"], out)
    html = out.read_text()

    assert [p.run["plate"] for p in screen.plates] == ["P2", "P3", "P1"]  # by date classified
    plate_rows = re.findall(r'<tr><td><a href="([^"]+)">(P\d)</a></td>', html)
    assert [name for _, name in plate_rows] == ["P2", "P3", "P1"]
    assert all((out.parent / href).is_file() for href, _ in plate_rows)  # each plate's own report
    assert "24 fields classified, 1 failed, 4 treatments" in html
    assert (
        "1 x truncated TIFF" in html and "1 folder(s) not reported" in html and "broken/summary.json: missing" in html
    )

    for name, results in plates.items():  # fields per class per plate, in the classes table
        counts = Counter(f["Classify_Class"] for f in results.fields)
        row = re.search(rf"<tr><td>{name}</td><td><div class=\"bar\">.*?</div></td>(.*?)</tr>", html).group(1)
        assert re.findall(r'<td class="n">(\d*)</td>', row) == [str(counts[label] or "") for label in LABELS]

    for compound in COMPOUNDS.values():  # worked out here: the class most plates gave, and how many did
        calls = [
            next(t for t in p.treatments if t["Metadata_Compound"] == compound)["Classify_Class"]
            for p in plates.values()
        ]
        (best, n), *rest = sorted(Counter(calls).items(), key=lambda kv: (-kv[1], LABELS.index(kv[0])))
        row = re.search(rf"<tr><td>{compound}</td>(.*?)</tr>", html).group(1)
        assert f"{LABELS.index(best) + 1}. {best}</td>" in row and f">{n / 3:.2f}</td>" in row
        assert row.count('class="swatch"') == 4  # the consensus, then one dot per plate
    names = re.findall(r"<tr><td>([^<]+)</td><td class=\"n\">0.1</td>", html)
    assert names == ["cytochalasin B", "DMSO", "Nocodazole", "taxol"]  # sorted as a reader would, not by case
    assert "Treatments against their MoA" not in html


def test_moa_table_gives_the_confusion_matrix(tmp_path):
    plates = [write_plate_results(tmp_path / name, name) for name in ("P1", "P2")]
    moa_csv = tmp_path / "moa.csv"
    moa_csv.write_text("compound,concentration,moa\ntaxol,0.1,Microtubule stabilizers\nDMSO,0.1,DMSO\n")
    out = tmp_path / "screen.html"
    write_screen_report([tmp_path / "P1", tmp_path / "P2"], out, moa_csv)
    html = out.read_text()
    assert "2 treatments of known MoA" in html and "MoA from" in html
    table = html.split('<table class="confusion">')[1]
    assert re.search(r"<th>Microtubule stabilizers</th>", table) and re.search(r"<th>DMSO</th>", table)
    assert len(plates) == 2


def test_cli_report_exit_codes(tmp_path):
    write_plate_results(tmp_path / "P1", "P1")
    runner = CliRunner()
    out = tmp_path / "s.html"
    result = runner.invoke(app, ["report", str(tmp_path / "P1"), "--out", str(out)])
    assert result.exit_code == 0 and out.is_file()
    assert out.read_text().count('title="on one plate only: no replicate">-</td>') == len(COMPOUNDS)
    result = runner.invoke(app, ["report", str(tmp_path / "P1"), str(tmp_path / "nothing"), "--out", str(out)])
    assert result.exit_code == 1 and "nothing" in result.output and "summary.json" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--out", str(out)])
    assert result.exit_code == 2 and "no results to report" in result.output

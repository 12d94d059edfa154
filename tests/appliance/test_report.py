"""The report and plate map, rendered from a PlateResults as classify builds it, and again from its folder."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from html import escape
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from appliance.platemap import FIGURE, PLATE_96, PLATE_384, draw_plate_map, map_layout, plate_layout
from appliance.report import write_report
from appliance.result_files import read_results, write_results
from appliance.result_rows import probability_column
from tests.appliance.test_results import LABELS, made_results


def expected_classes(results) -> dict[str, Counter]:
    """Fields and wells per class, worked out here from the probabilities (argmax; a well: of its mean)."""
    columns = [probability_column(label) for label in LABELS]
    probs = np.array([[f[c] for c in columns] for f in results.fields])
    wells = [f["Metadata_Well"] for f in results.fields]
    per_well = {w: probs[[i for i, x in enumerate(wells) if x == w]].mean(axis=0) for w in dict.fromkeys(wells)}
    return {
        "fields": Counter(LABELS[i] for i in probs.argmax(axis=1)),
        "wells": Counter(LABELS[int(np.argmax(p))] for p in per_well.values()),
    }


INNER_96 = [f"{r}{c:02d}" for r in "BCDEFG" for c in range(2, 12)]
FAILURES = [
    ("B02", 3, "B02_s3_w2X.tif", "truncated TIFF: file ends at byte 4096 of 2621440"),
    ("H12", 1, "H12_s1_w4Y.tif", "missing channel Actin (w4)"),
    ("H12", 2, "H12_s2_w1<Z>.tif", 'wrong bit depth: 8-bit, expected 16 <b>& "bold"</b>'),
]


def html_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def table_row(html: str, label: str) -> list[str]:
    """The cells of the class table's row for label."""
    match = re.search(r"<tr>(<td>(?:(?!</tr>).)*?</td><td>" + re.escape(label) + r"</td>.*?)</tr>", html)
    assert match, label
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def test_96_well_plate_report(tmp_path):
    out = tmp_path / "P1-results"
    out.mkdir()
    results = made_results(
        out,
        INNER_96,
        failures=FAILURES,
        compounds={w: "taxol" if i % 2 else "<script>alert(1)</script>" for i, w in enumerate(INNER_96)},
    )
    expected = expected_classes(results)
    report = write_report(results)

    assert report == out / "report.html"
    png = imread(out / "plate_map.png")
    (width, height), dpi = FIGURE[96]
    assert png.shape[:2] == (round(height * dpi), round(width * dpi))
    html = html_of(report)
    assert "96-well plate; 60 wells with a result, 2 with failed fields" in html
    assert "123 found, 120 classified, 3 failed" in html
    for label in LABELS:
        cells = table_row(html, label)
        assert cells[2] == str(expected["fields"].get(label, 0)) and cells[4] == str(expected["wells"].get(label, 0))
    assert sum(expected["fields"].values()) == 120

    for _, _, file, reason in FAILURES:  # every failure, escaped
        assert escape(reason) in html and escape(file) in html
    assert '<b>& "bold"</b>' not in html and "<Z>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "<h2>Treatments</h2>" in html and "taxol" in html
    assert "run-2026-11-25-abc" in html and "ab" * 32 in html and "3.81 fields/s" in html
    assert "2026-11-25T10:00:00+00:00" in html  # the date the run finished, as the summary keeps it

    # the map inline as SVG, one well per position, each with its hover text
    assert html.count('<g class="well"') == 96
    b02 = re.search(r'<g class="well" data-well="B02"><title>(.*?)</title>', html, re.DOTALL).group(1)
    well = results.wells[0]
    assert b02.startswith("B02\n") and f"class {escape(well['Classify_Class'])}, confidence" in b02
    assert f"{well['Classify_Confidence']:.2f}" in b02 and "2 field(s) classified" in b02
    assert "1 field(s) failed" in b02  # B02 s3 failed
    assert re.search(r'data-well="A01"><title>A01\nnot imaged \(no fields\)</title>', html)  # never imaged

    # self-contained: no URL of any kind, nothing fetched, no script
    assert not re.search(r"https?:|//[a-z]|<link|<script|@import|url\(|src=", html, re.IGNORECASE)


def test_384_well_plate_report(tmp_path):
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25) if (ord(r) + c) % 3]
    html = html_of(
        write_report(made_results(tmp_path, wells, sites=1, failures=[("P24", 1, "P24_s1_w1.tif", "not a TIFF file")]))
    )
    (width, height), dpi = FIGURE[384]
    assert imread(tmp_path / "plate_map.png").shape[:2] == (round(height * dpi), round(width * dpi))
    assert f"384-well plate; {len(wells)} wells with a result, 1 with failed fields" in html
    assert "not a TIFF file" in html


def test_no_failures_no_treatments(tmp_path):
    html = html_of(write_report(made_results(tmp_path, ["B02", "B03"], sites=1)))
    assert "None: every field found was classified." in html
    assert "<h2>Treatments</h2>" not in html
    assert "96-well plate; 2 wells with a result, 0 with failed fields" in html


def test_interrupted_run_says_so(tmp_path):
    html = html_of(write_report(made_results(tmp_path, ["B02"], run={"interrupted": True, "shard": "1/2"})))
    assert "The run was interrupted" in html and "2 of 2: this report covers that share only" in html


def test_model_card_from_the_summary(tmp_path):
    model = {
        "run_id": "r1",
        "weights_sha256": "cd" * 32,
        "channels": ["DAPI", "Tubulin", "Actin"],
        "input_height": 1024,
        "input_width": 1280,
        "normalization": {"mean": [900, 1500, 1100], "std": [250, 400, 300]},
    }
    html = html_of(write_report(made_results(tmp_path, ["B02"], run={"model": model})))
    assert "DAPI, Tubulin, Actin" in html and "1024 x 1280 pixels" in html
    assert "Tubulin: (raw - 1500.0) / 400.0" in html


def test_failures_off_the_map_and_plates_too_large_to_draw(tmp_path):
    failures = [("", 1, "junk.tif", "no well in the file name")]
    html = html_of(write_report(made_results(tmp_path, ["B02"], failures=failures)))
    assert "1 failure(s) name no well on the plate" in html and "no well in the file name" in html

    html = html_of(write_report(made_results(tmp_path, ["B02", "AF48"])))
    assert "1536-well plate; 2 wells with a result" in html and 'class="platemap"' in html
    html = html_of(write_report(made_results(tmp_path, ["B02", "AG01"])))  # past the last row of 1536 wells
    assert "No plate map: wells AG01 lie outside a 1536-well plate" in html and 'class="platemap"' not in html
    assert not (tmp_path / "plate_map.png").exists()  # the earlier map would contradict the tables


def test_the_report_rebuilt_from_the_folder_is_the_one_written_with_the_results(tmp_path):
    results = made_results(tmp_path, INNER_96[:20], failures=FAILURES[:1], compounds={"B02": "taxol"})
    write_results(results)
    written = {name: (tmp_path / name).read_bytes() for name in ("report.html", "plate_map.png")}
    for name in written:
        (tmp_path / name).unlink()
    write_report(read_results(tmp_path))
    assert {name: (tmp_path / name).read_bytes() for name in written} == written


def test_plate_layout_from_wells():
    assert plate_layout([("A", 1), ("H", 12)]) == PLATE_96
    assert plate_layout([("B", 2), ("I", 1)]) == PLATE_384
    assert plate_layout([("A", 13)]) == PLATE_384
    assert plate_layout([("Q", 1)]).wells == plate_layout([("A", 25)]).wells == 1536
    with pytest.raises(ValueError, match="AG01"):
        plate_layout([("AG", 1)])
    with pytest.raises(ValueError, match="A49"):
        plate_layout([("A", 49)])
    # a well with failures only still decides the plate
    assert map_layout([{"Metadata_Well": "B02", "Classify_Class": "DMSO"}], failed=["M20"]) == PLATE_384


def test_plate_map_marks_wells(tmp_path):
    """Pixels, not just a file: a sure well has its class colour, a failed-only well is grey with a dark ring."""
    wells = [{"Metadata_Well": "A01", "Classify_Class": "DMSO", "Classify_Confidence": "1.0"}]
    image = imread(draw_plate_map(wells, LABELS, tmp_path / "map.png", failed={"H12": 2}))[..., :3]
    plain = imread(draw_plate_map(wells, LABELS, tmp_path / "plain.png", failed={"H12": 0}))[..., :3]
    dmso = np.array([0x56, 0xB4, 0xE9]) / 255  # the palette's second colour: DMSO is label 2
    assert (np.abs(image - dmso).max(axis=2) < 0.02).sum() > 2000  # the well's disc, beyond the legend swatch

    def dark(im):
        return (im.max(axis=2) < 0.15).sum()

    assert dark(image) - dark(plain) > 500  # the ring and cross of H12 (text is dark in both)


def test_report_never_imports_torch():
    """The runtime image has no torch: the report and the map must not need it."""
    code = 'import sys; sys.modules["torch"] = None; import appliance.report, appliance.platemap'
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_well_never_imaged_is_drawn_unlike_a_well_whose_fields_all_failed(tmp_path):
    """Failed (H12): a grey disc, ringed and crossed. Never imaged (the other 94 wells): white inside, so
    the map without H12's failure has only the anti-aliasing of their dotted outlines in that grey."""
    wells = [{"Metadata_Well": "A01", "Classify_Class": "DMSO", "Classify_Confidence": "1.0"}]
    failed = imread(draw_plate_map(wells, LABELS, tmp_path / "map.png", failed={"H12": 2}))[..., :3]
    plain = imread(draw_plate_map(wells, LABELS, tmp_path / "plain.png"))[..., :3]

    def grey(im):
        return (np.abs(im - np.array([0xE4, 0xE4, 0xE4]) / 255).max(axis=2) < 0.01).sum()

    assert grey(failed) - grey(plain) > 1500  # H12's disc
    assert grey(plain) < 10000  # anti-aliased outlines; 94 grey discs would be over 100 000 pixels


def test_a_plate_whose_moa_table_is_known_gets_the_treatment_confusion_matrix(tmp_path, tiny_model):
    """End to end: BBBC021 metadata with its MoA table -> Metadata_MoA in fields.csv -> the report's matrix."""
    from appliance.classify import classify_plate
    from appliance.inference import Classifier
    from appliance.synth import write_dataset

    written = write_dataset(tmp_path / "data", plates=1, fields_per_class=1, size=(128, 128), seed=5)
    plate = tmp_path / "data" / "Week1" / written["plates"][0]
    summary = classify_plate(plate, Classifier(tiny_model, "f32"), tmp_path / "out")
    fields = read_results(tmp_path / "out").fields
    assert summary["counts"]["classified"] == 13 and all(f["Metadata_MoA"] for f in fields)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Treatments against their MoA" in html and '<table class="confusion">' in html

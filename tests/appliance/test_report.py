"""The report and plate map, built from result files written here exactly as classify writes them."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from html import escape
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from appliance.platemap import FIGURE, PLATE_96, PLATE_384, draw_plate_map, map_layout, plate_layout
from appliance.report import write_report

LABELS = ["Actin disruptors", "DMSO", "Microtubule stabilizers"]
CHANNEL_FILES = ("FileName_DAPI", "FileName_Tubulin", "FileName_Actin")


def column(label: str) -> str:
    return "Probability_" + re.sub(r"[^0-9A-Za-z]+", "_", label)


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def prediction(probs: np.ndarray, labels) -> dict:
    best = int(np.argmax(probs))
    return {**{column(label): f"{p:.6f}" for label, p in zip(labels, probs)},
            "Classify_Class": labels[best], "Classify_Confidence": f"{probs[best]:.6f}"}


def write_results(out: Path, wells: list[str], sites: int = 2, failures: list[tuple[str, int, str, str]] = (),
                  compounds: dict[str, str] | None = None, labels=LABELS, seed: int = 0, run: dict | None = None):
    """fields.csv, wells.csv, failures.csv, run.json (and treatments.csv with compounds) per interface B.

    Returns {"fields": {class: n}, "wells": {class: n}}, the counts the report must show.
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    probs_cols = [column(label) for label in labels]
    fields, well_rows, by_field = [], [], {}
    for i, well in enumerate(wells):
        row_letters, col = re.match(r"([A-Z]+)(\d+)$", well).groups()
        favoured = i % len(labels)
        compound = (compounds or {}).get(well, "")
        probs = []
        for site in range(1, sites + 1):
            p = rng.dirichlet(np.ones(len(labels)))
            p[favoured] += 2.0 + i % 3  # wells of varied confidence
            p /= p.sum()
            probs.append(p)
            fields.append({"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Row": row_letters,
                           "Metadata_Column": int(col), "Metadata_Site": site, "Metadata_Compound": compound,
                           "Metadata_Concentration": "0.1" if compound else "", "Metadata_Fit": "",
                           **{name: f"{well}_s{site}_w{n}.tif" for name, n in zip(CHANNEL_FILES, (1, 2, 4))},
                           **prediction(p, labels), "Model_SHA256": "ab" * 32, "Model_Precision": "f32"})
        mean = np.mean(probs, axis=0)
        own = [labels[int(np.argmax(p))] for p in probs]
        row = {"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Row": row_letters, "Metadata_Column": int(col),
               "Metadata_Compound": compound, "Metadata_Concentration": "0.1" if compound else "",
               "Count_Fields": sites, **prediction(mean, labels), "Model_Precision": "f32"}
        row["Classify_Agreement"] = f"{own.count(row['Classify_Class']) / sites:.3f}"
        well_rows.append(row)
        for name in own:
            by_field[name] = by_field.get(name, 0) + 1
    write_csv(out / "fields.csv", ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column",
                                   "Metadata_Site", "Metadata_Compound", "Metadata_Concentration", *CHANNEL_FILES,
                                   "Metadata_Fit", *probs_cols, "Classify_Class", "Classify_Confidence",
                                   "Model_SHA256", "Model_Precision"], fields)
    write_csv(out / "wells.csv", ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column",
                                  "Metadata_Compound", "Metadata_Concentration", "Count_Fields", *probs_cols,
                                  "Classify_Class", "Classify_Confidence", "Classify_Agreement", "Model_Precision"],
              well_rows)
    write_csv(out / "failures.csv", ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "File", "Reason"],
              [{"Metadata_Plate": "P1", "Metadata_Well": w, "Metadata_Site": s, "File": f, "Reason": r}
               for w, s, f, r in failures])
    if compounds:
        treatments = {}
        for row in well_rows:
            treatments.setdefault(row["Metadata_Compound"], []).append(row)
        write_csv(out / "treatments.csv", ["Metadata_Compound", "Metadata_Concentration", "Count_Wells",
                                           "Count_Fields", *probs_cols, "Classify_Class", "Classify_Confidence",
                                           "Classify_Agreement"],
                  [{"Metadata_Compound": c, "Metadata_Concentration": "0.1", "Count_Wells": len(rows),
                    "Count_Fields": len(rows) * sites,
                    **prediction(np.mean([[float(r[col]) for col in probs_cols] for r in rows], axis=0), labels),
                    "Classify_Agreement": "1.000"} for c, rows in treatments.items()])
    n_fields = len(fields) + len(failures)
    (out / "run.json").write_text(json.dumps({
        "plate": "P1", "plate_dir": "/plates/P1", "out": str(out), "layout": "bbbc021", "shard": "0/1",
        "precision": "f32", "fit": None,
        "model": {"xml": "/models/model.xml", "run_id": "run-2026-11-25-abc", "weights_sha256": "ab" * 32,
                  "labels": list(labels)},
        "versions": {"appliance": "0.1.0", "openvino": "2025.3"},
        "counts": {"fields": n_fields, "classified": len(fields), "failed": len(failures), "skipped_done": 0},
        "timings": {"discover_s": 0.12, "classify_s": 10.5, "total_s": 11.0}, "fields_per_s": 3.81,
        "interrupted": False, "files": {}, **(run or {})}))
    per_well = {}
    for row in well_rows:
        per_well[row["Classify_Class"]] = per_well.get(row["Classify_Class"], 0) + 1
    return {"fields": by_field, "wells": per_well}


INNER_96 = [f"{r}{c:02d}" for r in "BCDEFG" for c in range(2, 12)]
FAILURES = [("B02", 3, "B02_s3_w2X.tif", "truncated TIFF: file ends at byte 4096 of 2621440"),
            ("H12", 1, "H12_s1_w4Y.tif", "missing channel Actin (w4)"),
            ("H12", 2, "H12_s2_w1<Z>.tif", 'wrong bit depth: 8-bit, expected 16 <b>& "bold"</b>')]


def html_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def table_row(html: str, label: str) -> list[str]:
    """The cells of the class table's row for label."""
    match = re.search(r"<tr>(<td>(?:(?!</tr>).)*?</td><td>" + re.escape(label) + r"</td>.*?)</tr>", html)
    assert match, label
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def test_96_well_plate_report(tmp_path):
    out = tmp_path / "P1-results"
    expected = write_results(out, INNER_96, failures=FAILURES,
                             compounds={w: "taxol" if i % 2 else "<script>alert(1)</script>"
                                        for i, w in enumerate(INNER_96)})
    report = write_report(out)

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
    assert "<b>& \"bold\"</b>" not in html and "<Z>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "<h2>Treatments</h2>" in html and "taxol" in html
    assert "run-2026-11-25-abc" in html and "ab" * 32 in html and "3.81 fields/s" in html

    # self-contained: the map inline, no URL of any kind, nothing fetched
    inline = r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"'
    assert re.search("<img [^>]*" + inline, html)
    rest = re.sub(inline, "", html)
    assert not re.search(r"https?:|//[a-z]|<link|<script|@import|url\(|src=", rest, re.IGNORECASE)


def test_384_well_plate_report(tmp_path):
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25) if (ord(r) + c) % 3]
    write_results(tmp_path, wells, sites=1, failures=[("P24", 1, "P24_s1_w1.tif", "not a TIFF file")])
    html = html_of(write_report(tmp_path))
    (width, height), dpi = FIGURE[384]
    assert imread(tmp_path / "plate_map.png").shape[:2] == (round(height * dpi), round(width * dpi))
    assert f"384-well plate; {len(wells)} wells with a result, 1 with failed fields" in html
    assert "not a TIFF file" in html


def test_no_failures_no_treatments(tmp_path):
    write_results(tmp_path, ["B02", "B03"], sites=1)
    html = html_of(write_report(tmp_path))
    assert "None: every field found was classified." in html
    assert "<h2>Treatments</h2>" not in html
    assert "96-well plate; 2 wells with a result, 0 with failed fields" in html


def test_interrupted_run_says_so(tmp_path):
    write_results(tmp_path, ["B02"], run={"interrupted": True, "shard": "1/2"})
    html = html_of(write_report(tmp_path))
    assert "The run was interrupted" in html and "2 of 2: this report covers that share only" in html


def test_model_card_from_run_json(tmp_path):
    write_results(tmp_path, ["B02"], run={"model": {
        "labels": LABELS, "run_id": "r1", "weights_sha256": "cd" * 32, "channels": ["DAPI", "Tubulin", "Actin"],
        "input_height": 1024, "input_width": 1280, "normalization": {"mean": [900, 1500, 1100], "std": [250, 400, 300]}}})
    html = html_of(write_report(tmp_path))
    assert "DAPI, Tubulin, Actin" in html and "1024 x 1280 pixels" in html
    assert "Tubulin: (raw - 1500.0) / 400.0" in html


def test_failures_off_the_map_and_plates_too_large_to_draw(tmp_path):
    write_results(tmp_path, ["B02"], failures=[("", 1, "junk.tif", "no well in the file name")])
    html = html_of(write_report(tmp_path))
    assert "1 failure(s) name no well on the plate" in html and "no well in the file name" in html

    write_results(tmp_path, ["B02", "AF48"])  # a 1536-well plate
    html = html_of(write_report(tmp_path))
    assert "No plate map: wells AF48 lie outside a 384-well plate" in html and "<img" not in html
    assert not (tmp_path / "plate_map.png").exists()  # the earlier map would contradict the tables


def test_missing_result_file_is_named(tmp_path):
    write_results(tmp_path, ["B02"])
    (tmp_path / "wells.csv").unlink()
    with pytest.raises(FileNotFoundError, match="wells.csv"):
        write_report(tmp_path)


def test_plate_layout_from_wells():
    assert plate_layout([("A", 1), ("H", 12)]) == PLATE_96
    assert plate_layout([("B", 2), ("I", 1)]) == PLATE_384
    assert plate_layout([("A", 13)]) == PLATE_384
    with pytest.raises(ValueError, match="Q01"):
        plate_layout([("Q", 1)])
    with pytest.raises(ValueError, match="A25"):
        plate_layout([("A", 25)])
    # a well with failures only still decides the plate
    assert map_layout([{"Metadata_Well": "B02", "Classify_Class": "DMSO"}], failed=["M20"]) == PLATE_384


def test_plate_map_marks_wells(tmp_path):
    """Pixels, not just a file: a sure well has its class colour, a failed-only well is grey with a dark ring."""
    wells = [{"Metadata_Well": "A01", "Classify_Class": "DMSO", "Classify_Confidence": "1.0"}]
    image = imread(draw_plate_map(wells, LABELS, tmp_path / "map.png", failed={"H12": 2}))[..., :3]
    plain = imread(draw_plate_map(wells, LABELS, tmp_path / "plain.png", failed={"H12": 0}))[..., :3]
    dmso = np.array([0x56, 0xB4, 0xE9]) / 255  # the palette's second colour: DMSO is label 2
    assert (np.abs(image - dmso).max(axis=2) < 0.02).sum() > 2000  # the well's disc, beyond the legend swatch
    dark = lambda im: (im.max(axis=2) < 0.15).sum()
    assert dark(image) - dark(plain) > 500  # the ring and cross of H12 (text is dark in both)


def test_report_never_imports_torch():
    """The runtime image has no torch: the report and the map must not need it."""
    code = 'import sys; sys.modules["torch"] = None; import appliance.report, appliance.platemap'
    subprocess.run([sys.executable, "-c", code], check=True)

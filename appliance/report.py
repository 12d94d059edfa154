"""A plate's report: plate_map.png and one self-contained report.html, rendered from a PlateResults.

classify and merge render it from the object they have just built; `write_report(read_results(out))`
renders the same report again from the folder. report.html needs nothing beside it: the plate
map is embedded as base64 and the CSS is inline, so it can be mailed or archived as one file.
Every value is HTML-escaped: compound names, file names and failure reasons come from outside.
"""

from __future__ import annotations

import base64
from collections import Counter
from html import escape
from pathlib import Path

from appliance.files import write_text
from appliance.platemap import class_colour, draw_plate_map, map_layout, on_plate
from appliance.results import PLATE_MAP_PNG, REPORT_HTML, PlateResults

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 78em;
       padding: 0 1.5em; color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e2e2e2; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { background: none; font-weight: 600; width: 14em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 50%; vertical-align: -0.1em;
          margin-right: 0.4em; }
.warn { background: #fff4d6; border-left: 4px solid #e69f00; padding: 0.6em 1em; }
.bad { color: #b3261e; font-weight: 600; } .muted { color: #666; }
code { font-size: 0.95em; word-break: break-all; }
img.map { max-width: 100%; height: auto; border: 1px solid #ddd; }
"""


def text(value) -> str:
    """A table value as the report shows it: nothing for unknown, 0.3 not 0.300000 for a number."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def number(value, digits: int = 2) -> str:
    """A figure rounded to digits; "-" when unknown, as given when it is not a number."""
    if value is None or value == "":
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def cell(value, numeric: bool = False) -> str:
    return f'<td class="n">{escape(text(value))}</td>' if numeric else f"<td>{escape(text(value))}</td>"


def table(header: list[str], rows: list[list[str]]) -> str:
    """header: plain text; rows: lists of <td> cells, already escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(pairs: list[tuple[str, str]]) -> str:
    """Two-column table; values already escaped HTML."""
    return '<table class="kv">' + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def swatch(index: int) -> str:
    return f'<span class="swatch" style="background:{class_colour(index)}"></span>'


def class_cell(name: str, labels: list[str]) -> str:
    """A class as the map shows it: its colour and number, then its name."""
    if name in labels:
        i = labels.index(name)
        return f"<td>{swatch(i)}{i + 1}. {escape(name)}</td>"
    return cell(name)


def shard_text(shard) -> str:
    """What the summary's shard ("I/N", I from 0; or how shards were merged) means to a reader; "" for a whole plate."""
    if not shard or str(shard) == "0/1":
        return ""
    index, _, count = str(shard).partition("/")
    if index.isdigit() and count.isdigit():
        return f"{int(index) + 1} of {count}: this report covers that share only"
    return str(shard)


def summary_section(run: dict, wells: list[dict], failures: list[dict]) -> str:
    counts, model = run.get("counts") or {}, run.get("model") or {}
    failed = counts.get("failed", len(failures))
    field_counts = escape(
        f"{counts.get('fields', '-')} found, {counts.get('classified', '-')} classified, "
        f"{failed} failed"
        + (f", {counts['skipped_done']} done in an earlier run" if counts.get("skipped_done") else "")
    )
    pairs = [
        ("Plate", escape(str(run.get("plate", "-")))),
        ("Date", escape(str(run.get("finished") or "-"))),
        ("Plate folder", f"<code>{escape(str(run.get('plate_dir', '-')))}</code>"),
        ("Results folder", f"<code>{escape(str(run.get('out', '-')))}</code>"),
        ("Fields", f'<span class="bad">{field_counts}</span>' if failed not in (0, "-") else field_counts),
        ("Wells with a result", escape(str(len(wells)))),
        ("Throughput", escape(f"{number(run.get('fields_per_s'))} fields/s")),
        ("Precision", escape(str(run.get("precision", "-")))),
        ("Layout", escape(str(run.get("layout", "-")))),
        ("Model run id", f"<code>{escape(str(model.get('run_id', '-')))}</code>"),
        ("Weights SHA-256", f"<code>{escape(str(model.get('weights_sha256', '-')))}</code>"),
    ]
    if run.get("fit"):
        pairs.append(("Fit", escape(str(run["fit"]))))
    shard = shard_text(run.get("shard"))
    if shard:
        pairs.append(("Shard", escape(shard)))
    banner = ""
    if run.get("interrupted"):
        banner = (
            '<p class="warn">The run was interrupted: these results cover only the fields classified '
            "before it stopped. Run classify again on the same results folder to finish the plate.</p>"
        )
    return "<h2>Summary</h2>" + banner + key_values(pairs)


def class_section(labels: list[str], fields: list[dict], wells: list[dict]) -> str:
    per_field = Counter(f.get("Classify_Class", "") for f in fields)
    per_well = Counter(w.get("Classify_Class", "") for w in wells)
    total = sum(per_field.values())
    names = labels + sorted(n for n in (set(per_field) | set(per_well)) - set(labels) if n)
    rows = [
        [
            f"<td>{swatch(i)}{i + 1}</td>",
            cell(name),
            cell(per_field[name], True),
            cell(f"{per_field[name] / total:.1%}" if total else "-", True),
            cell(per_well[name], True),
        ]
        for i, name in enumerate(names)
    ]
    rows.append(
        [
            "<td></td>",
            "<td><b>all</b></td>",
            cell(total, True),
            cell("100.0%" if total else "-", True),
            cell(sum(per_well.values()), True),
        ]
    )
    return "<h2>Classes</h2>" + table(["#", "class", "fields", "of fields", "wells"], rows)


def treatments_section(treatments: list[dict], labels: list[str]) -> str:
    rows = [
        [
            cell(t.get("Metadata_Compound", "")),
            cell(t.get("Metadata_Concentration", ""), True),
            cell(t.get("Count_Wells", ""), True),
            cell(t.get("Count_Fields", ""), True),
            class_cell(t.get("Classify_Class", ""), labels),
            cell(number(t.get("Classify_Confidence")), True),
            cell(number(t.get("Classify_Agreement")), True),
        ]
        for t in treatments
    ]
    return (
        '<h2>Treatments</h2><p class="muted">Mean of the treatment\'s well probabilities (each well '
        "weighing the same); agreement: the fraction of its wells whose own class is the treatment's.</p>"
        + table(["compound", "concentration", "wells", "fields", "class", "confidence", "agreement"], rows)
    )


def failures_section(failures: list[dict]) -> str:
    if not failures:
        return "<h2>Failures</h2><p>None: every field found was classified.</p>"
    rows = [
        [
            cell(f.get("Metadata_Well", "")),
            cell(f.get("Metadata_Site", ""), True),
            f"<td><code>{escape(text(f.get('File')))}</code></td>",
            cell(f.get("Reason", "")),
        ]
        for f in failures
    ]
    return f'<h2>Failures</h2><p class="bad">{len(failures)} field(s) could not be classified:</p>' + table(
        ["well", "site", "file", "reason"], rows
    )


def timings_section(run: dict) -> str:
    timings = run.get("timings") or {}
    names = {"discover_s": "finding the fields", "classify_s": "reading and classifying", "total_s": "total"}
    pairs = [(names.get(k, k), escape(f"{number(v, 1)} s")) for k, v in timings.items()]
    pairs.append(
        (
            "Throughput",
            escape(
                f"{number(run.get('fields_per_s'))} fields/s "
                f"({(run.get('counts') or {}).get('classified', '-')} fields classified)"
            ),
        )
    )
    return "<h2>Timings</h2>" + key_values(pairs)


def model_section(run: dict, labels: list[str]) -> str:
    model = run.get("model") or {}
    pairs = [("Classes", "<br>".join(f"{swatch(i)}{i + 1}. {escape(label)}" for i, label in enumerate(labels)))]
    if model.get("channels"):
        pairs.append(("Channels", escape(", ".join(map(str, model["channels"])))))
    if model.get("input_height") and model.get("input_width"):
        pairs.append(
            (
                "Input size",
                escape(
                    f"{model['input_height']} x {model['input_width']} pixels (height x width)"
                    + (f", {model['bit_depth']}-bit" if model.get("bit_depth") else "")
                ),
            )
        )
    norm = model.get("normalization") or model.get("normalisation")
    if isinstance(norm, dict) and norm.get("mean") and norm.get("std"):
        channels = model.get("channels") or [f"channel {i + 1}" for i in range(len(norm["mean"]))]
        lines = zip(channels, norm["mean"], norm["std"], strict=False)  # a summary written by hand may differ
        pairs.append(
            ("Normalisation", "<br>".join(escape(f"{c}: (raw - {number(m, 1)}) / {number(s, 1)}") for c, m, s in lines))
        )
    for key, name in (("xml", "Model file"), ("run_id", "Run id"), ("weights_sha256", "Weights SHA-256")):
        if model.get(key):
            pairs.append((name, f"<code>{escape(str(model[key]))}</code>"))
    pairs.append(("Precision run", escape(str(run.get("precision", "-")))))
    versions = run.get("versions") or {}
    if versions:
        pairs.append(("Versions", escape(", ".join(f"{k} {v}" for k, v in versions.items()))))
    return "<h2>Model</h2>" + key_values(pairs)


def plate_map_section(png: Path, plate: str, wells: list[dict], labels: list[str], failures: list[dict]) -> str:
    """Draws the map to png and returns its section, the picture inline; without a map when it cannot be drawn."""
    failed = Counter(str(f.get("Metadata_Well", "")).strip().upper() for f in failures)
    mapped = {name: n for name, n in failed.items() if on_plate(name)}
    unmapped = sum(failed.values()) - sum(mapped.values())
    try:
        layout = map_layout(wells, mapped)
    except ValueError as exc:
        png.unlink(missing_ok=True)  # a map of an earlier run would contradict these tables
        return f'<h2>Plate map</h2><p class="bad">No plate map: {escape(str(exc))}.</p>'
    draw_plate_map(wells, labels, png, failed=mapped, title=plate)
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    note = f" {unmapped} failure(s) name no well on the plate; they are in the failures table." if unmapped else ""
    return (
        f'<h2>Plate map</h2><p class="muted">{layout.wells}-well plate; {len(wells)} wells with a result, '
        f"{len(mapped)} with failed fields (ringed; grey with a cross: none classified); white dotted wells "
        f"were never imaged.{escape(note)} Colour: the well's class (mean of its fields' "
        "probabilities), paler when less sure; the number is the class's number in the legend. Every field "
        f"and well is in fields.csv and wells.csv beside this report.</p>"
        f'<img class="map" alt="plate map of {escape(plate)}" src="data:image/png;base64,{image}">'
    )


def write_report(results: PlateResults) -> Path:
    """plate_map.png and report.html in the results' folder, from the object alone; returns report.html's path."""
    run, out_dir, labels = results.summary, results.out_dir, list(results.labels)
    fields, wells, failures = results.fields, results.wells, results.failures
    plate = str(run.get("plate", ""))
    body = "".join(
        [
            f'<h1>Plate {escape(plate)}</h1><p class="muted">M-CNN classification report</p>',
            summary_section(run, wells, failures),
            plate_map_section(out_dir / PLATE_MAP_PNG, plate, wells, labels, failures),
            class_section(labels, fields, wells),
            treatments_section(results.treatments, labels) if results.treatments else "",
            failures_section(failures),
            timings_section(run),
            model_section(run, labels),
        ]
    )
    html = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Plate {escape(plate)}: classification report</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
    return write_text(out_dir / REPORT_HTML, html)

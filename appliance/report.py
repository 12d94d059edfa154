"""A plate's report: plate_map.png and one self-contained report.html, rendered from a PlateResults.

classify and merge render it from the object they have just built; `write_report(read_results(out))`
renders the same report again from the folder. report.html needs nothing beside it: the plate
map is inline SVG (each well's class, confidence, fields and QC flags on hover), the gallery's
thumbnails are embedded PNGs (appliance/gallery.py) and the CSS is inline, so it can be mailed
or archived as one file; it runs no script. Every value is HTML-escaped: compound names, file
names and failure reasons come from outside.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path

from appliance.confusion import confusion_html, treatment_moa
from appliance.files import write_text
from appliance.gallery import COLOURS, STRETCH, gallery_html
from appliance.platemap import EMPTY, FAILED_EDGE, NOT_IMAGED_EDGE, draw_plate_map, map_layout, on_plate
from appliance.report_html import cell, key_values, number, page, swatch, table, text
from appliance.results import PLATE_MAP_PNG, REPORT_HTML, PlateResults
from appliance.svg_map import FLAG, plate_svg


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


def distance_threshold(run: dict) -> float | None:
    return (run.get("distance") or {}).get("threshold")


def far_fields(fields: list[dict], threshold: float | None) -> list[dict]:
    """Fields whose embedding lies beyond the model's threshold from every training centroid."""
    if threshold is None:
        return []
    return [f for f in fields if f.get("Classify_Distance") is not None and f["Classify_Distance"] > threshold]


RING_ICON = (
    f'<svg width="12" height="12" viewBox="0 0 12 12"><circle cx="6" cy="6" r="4.8" fill="{EMPTY}" '
    f'stroke="{FAILED_EDGE}" stroke-width="1.8"/></svg>'
)
NOT_IMAGED_ICON = (
    '<svg width="12" height="12" viewBox="0 0 12 12"><circle cx="6" cy="6" r="4.8" fill="white" '
    f'stroke="{NOT_IMAGED_EDGE}" stroke-dasharray="1.5,1.5"/></svg>'
)
FLAG_ICON = f'<svg width="12" height="12" viewBox="0 0 12 12"><path d="M12,0 h-12 l12,12 z" fill="{FLAG}"/></svg>'


def plate_map_section(png: Path, run: dict, results: PlateResults, labels: list[str]) -> str:
    """Draws the map to png and returns its section, the map as inline SVG; without a map when it cannot be drawn."""
    plate, wells, failures = str(run.get("plate", "")), results.wells, results.failures
    plate_wells = run.get("plate_wells")
    failed = Counter(str(f.get("Metadata_Well", "")).strip().upper() for f in failures)
    mapped = {name: n for name, n in failed.items() if on_plate(name)}
    unmapped = sum(failed.values()) - sum(mapped.values())
    threshold = distance_threshold(run)
    far = Counter(f["Metadata_Well"] for f in far_fields(results.fields, threshold))
    try:
        layout = map_layout(wells, mapped, plate_wells)
        svg = plate_svg(wells, labels, mapped, far, threshold, plate_wells)
    except ValueError as exc:
        png.unlink(missing_ok=True)  # a map of an earlier run would contradict these tables
        return f'<h2>Plate map</h2><p class="bad">No plate map: {escape(str(exc))}.</p>'
    draw_plate_map(wells, labels, png, failed=mapped, title=plate, plate_wells=plate_wells)
    note = f" {unmapped} failure(s) name no well on the plate; they are in the failures table." if unmapped else ""
    legend = "".join(f'<span class="item">{swatch(i)}{i + 1}. {escape(label)}</span>' for i, label in enumerate(labels))
    qc = (
        f'<span class="item">{FLAG_ICON} fields far from the training set (distance &gt; {threshold:.3g})</span>'
        if threshold is not None
        else '<span class="item muted">no QC distance: the model carries no training reference</span>'
    )
    return (
        f'<h2>Plate map</h2><p class="muted">{layout.wells}-well plate; {len(wells)} wells with a result, '
        f"{len(mapped)} with failed fields (ringed; grey with a cross: none classified), {len(far)} with fields "
        f"far from the training set "
        f'(<span style="color:{FLAG}">red corner</span>).{escape(note)} Colour: the well\'s class (mean of its '
        "fields' probabilities), paler when less sure; the number is the class's number. Point at a well for "
        "its class, confidence and fields. plate_map.png beside this report is the same map as a picture; every "
        "field and well is in fields.csv and wells.csv.</p>"
        f"{svg}"
        f'<p class="legend">{legend}<span class="item">{RING_ICON} ringed: fields failed</span>'
        f'<span class="item">{NOT_IMAGED_ICON} not imaged (no fields)</span>{qc}</p>'
    )


def gallery_section(results: PlateResults, labels: list[str], threshold: float | None) -> str:
    if not results.thumbnails:
        return (
            '<h2>Gallery</h2><p class="muted">No thumbnails: these results were made without them '
            "(thumbnails are made while classify reads the fields).</p>"
        )
    channels = list(results.channels)
    colours = ", ".join(f"{c} {('red', 'green', 'blue')[COLOURS[c]]}" for c in channels if c in COLOURS)
    return (
        '<h2>Gallery</h2><p class="muted">Per class, its most and least confident fields'
        f"{': ' + escape(colours) if colours else ''}; each channel stretched between its {STRETCH[0]:g} and "
        f"{STRETCH[1]:g} percentiles within the field, so brightness is not comparable between fields. "
        "Caption: well, site, confidence.</p>"
        + gallery_html(results.fields, labels, channels, results.thumbnails, swatch, threshold)
    )


def confusion_section(results: PlateResults, labels: list[str]) -> str:
    moa = treatment_moa(results.fields)
    calls = [
        (moa[(t["Metadata_Compound"], t["Metadata_Concentration"])], t["Classify_Class"])
        for t in results.treatments
        if (t["Metadata_Compound"], t["Metadata_Concentration"]) in moa
    ]
    return "<h2>Treatments against their MoA</h2>" + confusion_html(calls, labels) if calls else ""


def qc_section(run: dict, fields: list[dict]) -> str:
    distance = run.get("distance")
    if not distance:
        return (
            '<h2>QC: distance to the training set</h2><p class="muted">Not measured: the model carries no '
            "summary of its training embeddings (export it again with this version).</p>"
        )
    far = far_fields(fields, distance["threshold"])
    text_ = (
        f"{len(far)} of {len(fields)} fields lie further from every training class centroid than "
        f"{distance['threshold']:.3g}, the {distance['percentile']:g}th percentile of the model's own training "
        f"fields' distances ({distance.get('training_fields', '?')} fields sampled at export). Their calls are "
        "less to be trusted: out-of-focus fields, debris, empty wells, or a phenotype the model never saw. "
        "Classify_Distance in fields.csv has every field's distance."
    )
    rows = [
        [
            cell(f["Metadata_Well"]),
            cell(f["Metadata_Site"], True),
            cell(f["Classify_Class"]),
            cell(number(f["Classify_Confidence"]), True),
            cell(number(f["Classify_Distance"]), True),
        ]
        for f in sorted(far, key=lambda f: -f["Classify_Distance"])[:50]
    ]
    more = f'<p class="muted">The 50 furthest shown of {len(far)}.</p>' if len(far) > 50 else ""
    table_ = table(["well", "site", "class", "confidence", "distance"], rows) if rows else ""
    return f"<h2>QC: distance to the training set</h2><p>{escape(text_)}</p>{table_}{more}"


def write_report(results: PlateResults, folder: Path | None = None) -> Path:
    """plate_map.png and report.html in folder (the results' own by default), from the object alone; returns
    report.html's path."""
    run, out_dir, labels = results.summary, Path(folder or results.out_dir), list(results.labels)
    fields, wells, failures = results.fields, results.wells, results.failures
    plate = str(run.get("plate", ""))
    body = "".join(
        [
            f'<h1>Plate {escape(plate)}</h1><p class="muted">M-CNN classification report</p>',
            summary_section(run, wells, failures),
            plate_map_section(out_dir / PLATE_MAP_PNG, run, results, labels),
            class_section(labels, fields, wells),
            gallery_section(results, labels, distance_threshold(run)),
            treatments_section(results.treatments, labels) if results.treatments else "",
            confusion_section(results, labels),
            qc_section(run, fields),
            failures_section(failures),
            timings_section(run),
            model_section(run, labels),
        ]
    )
    return write_text(out_dir / REPORT_HTML, page(f"Plate {plate}: classification report", body))

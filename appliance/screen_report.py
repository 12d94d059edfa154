"""A screen's report: one self-contained HTML page over many plates' results folders.

`mcnn-appliance report RESULTS_DIR...` reads each folder back as a PlateResults (its summary.json
and fields.parquet) and writes: the plates in the order they were classified (summary.json's
`finished`), each with its fields, failures and QC flags; the classes per plate as bars; every
treatment across plates with the class each plate gave it and how far the replicate plates
agree; and, when the treatments' MoA is known, the treatments against it. A folder that cannot be
read is listed as such and the others are reported.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from appliance.confusion import confusion_html, treatment_moa
from appliance.files import write_text
from appliance.layouts.bbbc021 import concentration_key, read_moa_table
from appliance.platemap import class_colour
from appliance.report_html import cell, number, page, swatch, table
from appliance.result_files import read_results
from appliance.results import FIELDS_PARQUET, REPORT_HTML, SUMMARY_JSON, PlateResults, ResultsError

SCREEN_HTML = "screen-report.html"
# What makes a sub-folder a plate's results, complete (summary.json) or not (a run's chunks, files without it)
RESULTS_MARKS = (SUMMARY_JSON, ".partial", FIELDS_PARQUET)


@dataclass
class Screen:
    plates: list[PlateResults]  # in the order they were classified
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # folder, why

    @property
    def labels(self) -> list[str]:
        """The first plate's classes, then any other plate's."""
        labels: list[str] = []
        for plate in self.plates:
            labels += [label for label in plate.labels if label not in labels]
        return labels


def results_folders(paths: list[Path]) -> list[Path]:
    """Each path a results folder (it holds summary.json), or a folder of them: its sub-folders holding results,
    complete or not (an unfinished one is then reported as such, not left out unsaid)."""
    folders = []
    for path in map(Path, paths):
        if (path / SUMMARY_JSON).is_file() or not path.is_dir():
            folders.append(path)  # one that is no results folder says so when read
            continue
        inside = sorted(p for p in path.iterdir() if any((p / name).exists() for name in RESULTS_MARKS))
        folders += inside or [path]
    return list(dict.fromkeys(p.resolve() for p in folders))


def read_screen(paths: list[Path]) -> Screen:
    plates, unreadable = [], []
    for folder in results_folders(paths):
        try:
            plates.append(read_results(folder))
        except ResultsError as exc:
            unreadable.append((folder, str(exc)))
    plates.sort(key=lambda p: (str(p.run.get("finished") or "~"), str(p.run.get("plate"))))
    return Screen(plates, unreadable)


def plates_section(screen: Screen, out: Path) -> str:
    rows = []
    for plate in screen.plates:
        summary, report = plate.summary, plate.out_dir / REPORT_HTML
        counts, distance = summary["counts"], plate.run.get("distance") or {}
        name = escape(str(summary.get("plate", "")))
        link = f'<a href="{escape(os.path.relpath(report, out.parent))}">{name}</a>' if report.is_file() else name
        failed = counts["failed"]
        rows.append(
            [
                f"<td>{link}</td>",
                cell(str(summary.get("finished") or "")[:16].replace("T", " ")),
                cell(counts["fields"], True),
                cell(counts["classified"], True),
                f'<td class="n{" bad" if failed else ""}">{failed}</td>',
                cell(distance.get("flagged", "-"), True),
                cell(len(plate.wells), True),
                cell(
                    ("interrupted" if summary.get("interrupted") else "complete") + f", {summary.get('precision', '')}"
                ),
            ]
        )
    return (
        '<h2>Plates</h2><p class="muted">In the order they were classified; a plate\'s name opens its report.</p>'
        + table(["plate", "classified on", "fields", "classified", "failed", "far (QC)", "wells", "run"], rows)
    )


def class_bar(counts: Counter, labels: list[str]) -> str:
    """A row of coloured segments, one per class, as wide as its share of the plate's fields."""
    total = sum(counts.values()) or 1
    segments = "".join(
        f'<span style="flex:{counts[label]};background:{class_colour(i)}" '
        f'title="{escape(label)}: {counts[label]} fields ({counts[label] / total:.0%})"></span>'
        for i, label in enumerate(labels)
        if counts[label]
    )
    return f'<div class="bar">{segments}</div>'


def classes_section(screen: Screen) -> str:
    labels = screen.labels
    header = ["plate", "fields per class", *[f"{i + 1}" for i in range(len(labels))]]
    rows = []
    for plate in screen.plates:
        counts = Counter(f["Classify_Class"] for f in plate.fields)
        rows.append(
            [cell(plate.run.get("plate")), f"<td>{class_bar(counts, labels)}</td>"]
            + [cell(counts[label] or "", True) for label in labels]
        )
    legend = "".join(f'<span class="item">{swatch(i)}{i + 1}. {escape(label)}</span>' for i, label in enumerate(labels))
    return (
        '<h2>Classes per plate</h2><p class="muted">Fields per class; point at a bar for its numbers.</p>'
        + f'<p class="legend">{legend}</p>'
        + table(header, rows)
    )


def treatment_calls(screen: Screen) -> dict[tuple, list[tuple[str, dict]]]:
    """(compound, concentration) -> [(plate, its treatments.csv row)], plates in screen order."""
    calls: dict[tuple, list[tuple[str, dict]]] = {}
    for plate in screen.plates:
        for t in plate.treatments:
            key = (t["Metadata_Compound"], t["Metadata_Concentration"])
            calls.setdefault(key, []).append((str(plate.run.get("plate")), t))
    return dict(sorted(calls.items(), key=lambda kv: (str(kv[0][0]).casefold(), kv[0][1] or 0.0)))


def consensus(rows: list[dict], labels: list[str]) -> tuple[str, float]:
    """The class most replicate plates gave (ties: the earlier class) and the fraction of plates that gave it."""
    counts = Counter(r["Classify_Class"] for r in rows)
    order = {label: i for i, label in enumerate(labels)}
    best = min(counts, key=lambda c: (-counts[c], order.get(c, len(order)), c))
    return best, counts[best] / len(rows)


def treatments_section(screen: Screen, calls: dict) -> str:
    labels = screen.labels
    rows = []
    for (compound, concentration), plates in calls.items():
        given, agreement = consensus([t for _, t in plates], labels)
        dots = "".join(
            f'<span title="{escape(name)}: {escape(t["Classify_Class"])} ({number(t["Classify_Confidence"])})">'
            f"{swatch(labels.index(t['Classify_Class']))}</span>"
            for name, t in plates
        )
        confidence = sum(t["Classify_Confidence"] for _, t in plates) / len(plates)
        rows.append(
            [
                cell(compound),
                cell(concentration, True),
                cell(len(plates), True),
                cell(sum(t["Count_Wells"] for _, t in plates), True),
                f"<td>{swatch(labels.index(given))}{labels.index(given) + 1}. {escape(given)}</td>",
                f'<td class="n{" bad" if agreement < 1 else ""}">{agreement:.2f}</td>'
                if len(plates) > 1
                else '<td class="n muted" title="on one plate only: no replicate">-</td>',
                cell(number(confidence), True),
                f"<td>{dots}</td>",
            ]
        )
    if not rows:
        return '<h2>Treatments across plates</h2><p class="muted">No plate names its compounds.</p>'
    return (
        '<h2>Treatments across plates</h2><p class="muted">Each plate gives a treatment the class of the mean of '
        "its wells' probabilities; the class shown is the one most plates gave, agreement the fraction of plates "
        "that gave it (1.00: every replicate agrees; a dash: on one plate only), confidence the plates' mean. "
        "One dot per plate, in the order above; point at it for the plate and its call.</p>"
        + table(["compound", "concentration", "plates", "wells", "class", "agreement", "confidence", "per plate"], rows)
    )


def moa_section(screen: Screen, calls: dict, moa_csv: Path | None) -> str:
    """Treatments against their MoA, from --moa or from the plates' own Metadata_MoA."""
    if moa_csv:
        known = read_moa_table(moa_csv)
        moa = {key: known.get((key[0], concentration_key(key[1]))) for key in calls if key[1] is not None}
    else:
        moa = {}
        for plate in screen.plates:
            moa.update(treatment_moa(plate.fields))
    pairs = [
        (moa[key], consensus([t for _, t in plates], screen.labels)[0]) for key, plates in calls.items() if moa.get(key)
    ]
    source = f" (MoA from {escape(str(moa_csv))})" if moa_csv else ""
    html = confusion_html(pairs, screen.labels)
    return f"<h2>Treatments against their MoA{source}</h2>{html}" if html else ""


def failures_section(screen: Screen) -> str:
    rows = []
    for plate in screen.plates:
        reasons = Counter(str(f.get("Reason", "")) for f in plate.failures)
        if reasons:
            common = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(3))
            rows.append([cell(plate.run.get("plate")), cell(len(plate.failures), True), cell(common)])
    unreadable = "".join(
        f"<li><code>{escape(str(folder))}</code>: {escape(reason)}</li>" for folder, reason in screen.unreadable
    )
    html = "<h2>Failures</h2>"
    html += table(["plate", "fields failed", "most common reasons"], rows) if rows else "<p>No field failed.</p>"
    if unreadable:
        html += f'<p class="bad">{len(screen.unreadable)} folder(s) not reported:</p><ul>{unreadable}</ul>'
    return html


def write_screen_report(paths: list[Path], out: Path, moa_csv: Path | None = None) -> Screen:
    """Read every results folder in paths and write the screen's report to out; returns what was read."""
    out = Path(out).resolve()
    screen = read_screen(paths)
    if not screen.plates:
        reasons = "; ".join(f"{folder}: {reason}" for folder, reason in screen.unreadable) or "no folders given"
        raise ResultsError(f"no results to report ({reasons})")
    calls = treatment_calls(screen)
    fields = sum(len(p.fields) for p in screen.plates)
    failed = sum(len(p.failures) for p in screen.plates)
    dates = [str(p.run.get("finished"))[:10] for p in screen.plates if p.run.get("finished")]
    span = f", classified {dates[0]} to {dates[-1]}" if dates else ""
    body = "".join(
        [
            f'<h1>Screen: {len(screen.plates)} plates</h1><p class="muted">M-CNN classification report; '
            f"{fields} fields classified, {failed} failed, {len(calls)} treatments{escape(span)}.</p>",
            plates_section(screen, out),
            classes_section(screen),
            treatments_section(screen, calls),
            moa_section(screen, calls, moa_csv),
            failures_section(screen),
        ]
    )
    write_text(out, page(f"Screen of {len(screen.plates)} plates: classification report", body))
    return screen

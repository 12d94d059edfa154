"""STAND-IN on the classify-output branch: the "report" helper writes the real appliance/report.py
(plate map, self-contained report.html). This one writes only a trivial report.html with the counts,
so classify_plate's last step runs; it reads run.json as the real one does.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

REPORT_HTML = "report.html"


def write_report(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "run.json").read_text())
    items = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in summary["counts"].items())
    path = out_dir / REPORT_HTML
    path.write_text(f"<!doctype html><title>{html.escape(summary['plate'])}</title>"
                    f"<h1>{html.escape(summary['plate'])}</h1><ul>{items}</ul>\n", encoding="utf-8")
    return path

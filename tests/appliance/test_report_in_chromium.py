"""The report as a browser shows it: headless Chromium (Debian's `chromium`, installed by .ci/run)
loads report.html from disk and a script, added to a copy, records what it rendered in the DOM:
every gallery thumbnail decoded (naturalWidth > 0), the plate map's wells drawn with their hover
text. A copy with one damaged thumbnail shows the check can fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from appliance.report import write_report
from appliance.result_rows import field_key
from tests.appliance.test_results import made_results

CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.querySelectorAll("img.thumb")];
  const map = document.querySelector("svg.platemap");
  document.body.setAttribute("data-check", JSON.stringify({
    images: images.length,
    loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    wells: document.querySelectorAll("svg.platemap g.well > title").length,
    map_width: map ? map.getBoundingClientRect().width : 0,
  }));
});
</script></body>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium: .ci/run installs Debian's chromium package", pytrace=False)
        pytest.skip("no chromium here (apt-get install chromium); CI runs this test")
    return found


def rendered(html: Path) -> dict:
    """What the check script found once Chromium had loaded a copy of html with the script in it."""
    page = html.with_name("checked-" + html.name)
    page.write_text(html.read_text(encoding="utf-8").replace("</body>", CHECK), encoding="utf-8")
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    result = subprocess.run(
        [*command, f"--user-data-dir={html.parent / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'data-check="([^"]*)"', result.stdout)
    assert match, f"no check result in Chromium's DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(unescape(match.group(1)))


def test_chromium_loads_every_gallery_image_and_the_map(tmp_path):
    wells = [f"{r}{c:02d}" for r in "BCDE" for c in range(2, 10)]
    results = made_results(tmp_path, wells, sites=2)
    rng = np.random.default_rng(0)
    results.thumbnails = {field_key(f): rng.integers(0, 4000, (3, 26, 32), dtype=np.uint16) for f in results.fields}
    report = write_report(results)
    shown = rendered(report)
    assert shown["images"] == 18 and shown["loaded"] == 18  # 3 classes x (3 most + 3 least confident)
    assert shown["wells"] == 96 and shown["map_width"] > 300

    damaged = tmp_path / "damaged.html"
    html = report.read_text(encoding="utf-8")
    start = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    damaged.write_text(html[:start] + "AAAA" + html[start + 60 :], encoding="utf-8")
    assert rendered(damaged)["loaded"] == 17

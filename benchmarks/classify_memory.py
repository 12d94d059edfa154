"""classify's resident memory over a whole 1536-well plate: it must stay flat, not grow with the fields done.

    .venv/bin/python benchmarks/classify_memory.py MODEL_DIR [--wells 1536] [--sites 9] [--embeddings]

A BBBC021-layout plate of 1536 wells (rows A..AF, columns 1..48) x 9 sites = 13,824 fields at the
model's field size is laid out with hard links to one field's three TIFFs (every file is still opened
and decoded; only the disk space is saved). The real console script classifies it while this
script samples its RSS (/proc/PID/status VmRSS) twice a second. From the first committed chunk file
(classification under way: start-up and the first batches' buffers are behind it) until the result
set starts being built (OUT/.incoming appears), the run is cut in quarters. Printed: the RSS median
of each quarter, the peak, growth = the last quarter's median over the first's (flat: <= 1.10), and
the peak while the result set (13,824 rows, report, plate map) is written after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_description, cpu_line, field_size

SCRIPT = Path(sys.executable).with_name("mcnn-appliance")
WAVELENGTHS = (1, 2, 4)  # DAPI, Tubulin, Actin in BBBC021's names


def row_names(count: int) -> list[str]:
    """A..Z, then AA..AF: 16 rows for 384 wells, 32 for 1536."""
    letters = [chr(ord("A") + i) for i in range(26)]
    return (letters + ["A" + c for c in letters])[:count]


def write_plate(folder: Path, size: tuple[int, int], wells: int, sites: int) -> int:
    rows, columns = {96: (8, 12), 384: (16, 24), 1536: (32, 48)}[wells]
    folder.mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(500, 3000, (3, *size), dtype=np.uint16)
    sources = []
    for wavelength, plane in zip(WAVELENGTHS, pixels):
        source = folder.parent / f"source_w{wavelength}.tif"
        tifffile.imwrite(source, plane)
        sources.append(source)
    for row in row_names(rows):
        for column in range(1, columns + 1):
            for site in range(1, sites + 1):
                for wavelength, source in zip(WAVELENGTHS, sources):
                    os.link(source, folder / f"Memory_{row}{column:02d}_s{site}_w{wavelength}.tif")
    return rows * columns * sites


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="export folder")
    parser.add_argument("--wells", type=int, default=1536, choices=(96, 384, 1536))
    parser.add_argument("--sites", type=int, default=9)
    parser.add_argument("--embeddings", action="store_true", help="also write embeddings.parquet")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    size = field_size(args.model)
    cpu = cpu_description()
    print(cpu_line(cpu))
    with tempfile.TemporaryDirectory(prefix="classify-memory-") as tmp:
        plate = Path(tmp) / "plate" / "Memory"
        fields = write_plate(plate, size, args.wells, args.sites)
        print(f"{fields} fields of {size[0]}x{size[1]} ({args.wells} wells x {args.sites} sites) in {plate}")
        command = [str(SCRIPT), "classify", str(plate), "--model", str(args.model), "--out", f"{tmp}/out", "--quiet"]
        start = time.perf_counter()
        process = subprocess.Popen(command + (["--embeddings"] if args.embeddings else []))
        samples, first_chunk, writing = [], None, None
        while process.poll() is None:
            rss = rss_mb(process.pid)
            now = time.perf_counter() - start
            if rss is not None:
                samples.append((now, rss))
            if first_chunk is None and any((Path(tmp) / "out").rglob("chunk-*.parquet")):
                first_chunk = now
            if writing is None and (Path(tmp) / "out" / ".incoming").exists():  # the result set is being built
                writing = now
            time.sleep(0.25)
        wall = time.perf_counter() - start
        writing = writing or wall
        if process.returncode != 0:
            raise SystemExit(f"classify exited {process.returncode}")
        summary = json.loads((Path(tmp) / "out" / "summary.json").read_text())
    if first_chunk is None:
        raise SystemExit("no chunk was committed while classify ran: the plate is too small to measure (more --sites)")
    span = (writing - first_chunk) / 4
    quarters = [
        [rss for t, rss in samples if first_chunk + q * span <= t < first_chunk + (q + 1) * span] for q in range(4)
    ]
    medians = [statistics.median(q) if q else float("nan") for q in quarters]
    growth = medians[3] / medians[0]
    peak = max(rss for t, rss in samples if t < writing)
    peak_writing = max((rss for t, rss in samples if t >= writing), default=float("nan"))
    print(
        f"classified {summary['counts']['classified']} fields in {wall:.0f} s ({summary['fields_per_s']:.1f} fields/s, "
        f"{summary['precision']})"
    )
    print(
        "RSS median per quarter of the classification (MB): "
        + ", ".join(f"{m:.0f}" for m in medians)
        + f"; peak {peak:.0f}; writing the result set (tables, report, map) after it: peak {peak_writing:.0f}"
    )
    print(f"growth, last quarter over first: {growth:.2f} (flat: <= 1.10) " + ("met" if growth <= 1.10 else "NOT met"))
    if args.json:
        figures = {"cpu": cpu, "fields": fields, "wall_s": wall, "rss_quarters_mb": medians, "peak_mb": peak}
        figures["peak_writing_mb"] = peak_writing
        args.json.write_text(json.dumps({**figures, "growth": growth}, indent=2))


if __name__ == "__main__":
    main()

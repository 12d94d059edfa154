"""What a plate costs beyond steady-state inference: `classify`'s wall time against N / fields-per-second.

    .venv/bin/python benchmarks/startup.py MODEL_DIR [--fields-per-class 2 8 30]

For each plate size (13 classes x fields per class: 26, 104 and 364 fields by default, synthetic, at
the model's field size) the real console script runs twice in fresh processes, as a user runs it:
    cold   an empty OpenVINO model cache (MCNN_MODEL_CACHE): Python start-up, imports, compile, ...
    warm   the cache the cold run left: the second `classify` of the day, or any plate `watch` takes
Each prints its wall time, the plate's own steady-state fields/s (summary.json's fields_per_s), and
wall / (fields / fields_per_s): 1.00 would be a plate that costs nothing beyond inference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.synth import write_dataset
from benchmarks.machine import cpu_description, cpu_line, field_size

SCRIPT = Path(sys.executable).with_name("mcnn-appliance")


def classify(plate: Path, model: Path, out: Path, cache: Path) -> tuple[float, dict]:
    """(wall seconds, summary) of one `mcnn-appliance classify` in a fresh process."""
    start = time.perf_counter()
    subprocess.run(
        [str(SCRIPT), "classify", str(plate), "--model", str(model), "--out", str(out), "--quiet"],
        check=True,
        env={**os.environ, "MCNN_MODEL_CACHE": str(cache)},
    )
    wall = time.perf_counter() - start
    return wall, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="export folder")
    parser.add_argument("--fields-per-class", type=int, nargs="+", default=[2, 8, 28])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    size = field_size(args.model)
    cpu = cpu_description()
    print(cpu_line(cpu))
    rows = []
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        tmp = Path(tmp)
        for per_class in args.fields_per_class:
            data = tmp / f"plates-{per_class}"
            written = write_dataset(data, plates=1, fields_per_class=per_class, size=size, seed=0, workers=2)
            plate, cache = data / "Week1" / written["plates"][0], tmp / f"cache-{per_class}"
            for run in ("cold", "warm"):
                wall, summary = classify(plate, args.model, tmp / f"out-{per_class}-{run}", cache)
                fields, rate = summary["counts"]["classified"], summary["fields_per_s"]
                row = {
                    "fields": fields,
                    "cache": run,
                    "wall_s": round(wall, 2),
                    "fields_per_s": rate,
                    "precision": summary["precision"],
                    "wall_over_steady": round(wall / (fields / rate), 2),
                    "overhead_s": round(wall - fields / rate, 2),
                }
                rows.append(row)
                print(
                    f"{fields:4d} fields, {run} cache: wall {wall:6.1f} s, steady {rate:.2f} fields/s "
                    f"({row['precision']}) -> wall / (fields / steady) = {row['wall_over_steady']:.2f}, "
                    f"overhead {row['overhead_s']:.1f} s"
                )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

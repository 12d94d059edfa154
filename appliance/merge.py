"""Merge the results folders of `classify --shard I/N` runs (one per host) into one plate's results.

Shards must be of the same plate, model, precision and layout, and must not overlap (the same
shard twice, or a field in two folders); a shard that is missing or was interrupted is reported,
and the merged folder says so in run.json. Wells and treatments are recomputed from the merged
field rows, so a well split across shards is aggregated over all its fields.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from appliance.chunks import field_key
from appliance.report import write_report
from appliance.files import write_json
from appliance.results import EMBEDDINGS_PARQUET, FAILURES_CSV, FIELDS_PARQUET, RUN_JSON, row_order, write_results

# run.json entries every shard must agree on.
SAME = ("plate", "layout", "precision", "fit")
SAME_MODEL = ("run_id", "weights_sha256", "labels")


class MergeError(ValueError):
    """The folders cannot be merged; the message names the folder and what disagrees."""


def read_run(out_dir: Path) -> dict:
    path = Path(out_dir) / RUN_JSON
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path}: not a classify results folder ({exc})") from exc
    for name in (FIELDS_PARQUET, FAILURES_CSV):
        if not (Path(out_dir) / name).is_file():
            raise MergeError(f"{Path(out_dir) / name}: missing")
    return run


def check_same(runs: list[dict], dirs: list[Path]) -> None:
    first = runs[0]
    for run, folder in zip(runs[1:], dirs[1:]):
        for key in SAME:
            if run.get(key) != first.get(key):
                raise MergeError(f"{folder}: {key} {run.get(key)!r}, but {dirs[0]} has {first.get(key)!r}")
        for key in SAME_MODEL:
            if run["model"].get(key) != first["model"].get(key):
                raise MergeError(f"{folder}: model {key} {run['model'].get(key)!r}, but {dirs[0]} has "
                                 f"{first['model'].get(key)!r}; shards of one plate must use the same model")
        if ("embeddings" in run["files"]) != ("embeddings" in first["files"]):
            raise MergeError(f"{folder}: embeddings {'present' if 'embeddings' in run['files'] else 'absent'}, "
                             f"unlike {dirs[0]}")


def shard_numbers(runs: list[dict], dirs: list[Path]) -> tuple[int, list[int]]:
    """N and the missing shard indices; the same shard twice is an overlap."""
    shards = [tuple(int(v) for v in run["shard"].split("/")) for run in runs]
    if len({count for _, count in shards}) != 1:
        raise MergeError(f"the folders were split differently ({', '.join(r['shard'] for r in runs)})")
    seen: dict[int, Path] = {}
    for (index, count), folder in zip(shards, dirs):
        if index in seen:
            raise MergeError(f"{folder} and {seen[index]} are both shard {index}/{count}: they overlap")
        seen[index] = folder
    count = shards[0][1]
    return count, sorted(set(range(count)) - set(seen))


def read_failures(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{**row, "Metadata_Site": int(row["Metadata_Site"])} for row in csv.DictReader(f)]


def merge_results(out_dirs: list[Path], merged: Path) -> dict:
    """Write the merged results folder; returns its summary (also merged/run.json)."""
    dirs = [Path(d).resolve() for d in out_dirs]
    merged = Path(merged).resolve()
    if not dirs:
        raise MergeError("no results folders to merge")
    if merged in dirs:
        raise MergeError(f"{merged}: the merged folder must not be one of the folders merged")
    runs = [read_run(d) for d in dirs]
    check_same(runs, dirs)
    count, missing = shard_numbers(runs, dirs)

    rows, owner, failures, vectors = [], {}, [], {}
    for run, folder in zip(runs, dirs):
        for row in pq.read_table(folder / FIELDS_PARQUET).to_pylist():
            key = field_key(row)
            if key in owner:
                raise MergeError(f"field {key[1]} site {key[2]} is in both {owner[key]} and {folder}: they overlap")
            owner[key] = folder
            rows.append(row)
        failures += read_failures(folder / FAILURES_CSV)
        if "embeddings" in run["files"]:
            for row in pq.read_table(folder / EMBEDDINGS_PARQUET).to_pylist():
                vectors[field_key(row)] = [v for k, v in row.items() if k.startswith("Embedding_")]
    rows.sort(key=row_order)
    failures = sorted((f for f in failures if field_key(f) not in owner), key=row_order)
    labels = runs[0]["model"]["labels"]
    channels = [name[len("FileName_"):] for name in pq.read_schema(dirs[0] / FIELDS_PARQUET).names
                if name.startswith("FileName_")]
    embeddings = (np.array([vectors[field_key(r)] for r in rows], dtype=np.float32).reshape(len(rows), -1)
                  if "embeddings" in runs[0]["files"] else None)
    merged.mkdir(parents=True, exist_ok=True)
    files = write_results(merged, rows, failures, labels, channels, embeddings)

    incomplete = [str(d) for run, d in zip(runs, dirs) if run.get("interrupted")]
    first = runs[0]
    summary = {
        "plate": first["plate"], "plate_dir": first.get("plate_dir"), "out": str(merged),
        "layout": first["layout"], "shard": f"merged {len(dirs)} of {count}", "precision": first["precision"],
        "fit": first.get("fit"), "model": first["model"], "versions": first.get("versions", {}),
        "counts": {"fields": sum(r["counts"]["fields"] for r in runs), "classified": len(rows),
                   "failed": len(failures), "skipped_done": sum(r["counts"]["skipped_done"] for r in runs)},
        "timings": {k: round(sum(r["timings"].get(k, 0.0) for r in runs), 3)
                    for k in ("discover_s", "classify_s", "total_s")},
        "fields_per_s": round(sum(r.get("fields_per_s", 0.0) for r in runs), 3),  # hosts run side by side
        "interrupted": bool(incomplete or missing),
        "files": files,
        "merged_from": [str(d) for d in dirs],
        "missing_shards": [f"{i}/{count}" for i in missing],
        "incomplete_shards": incomplete,
    }
    write_json(merged / RUN_JSON, summary)
    summary["files"]["report"] = Path(write_report(merged)).name
    write_json(merged / RUN_JSON, summary)
    return summary

"""Merge the results folders of `classify --shard I/N` runs (one per host) into one plate's results.

Each shard folder is read back as a PlateResults; the merged PlateResults is built from their
field rows, failures and embeddings and written the way classify writes its own. Shards must be
of the same plate, model, precision and layout, and must not overlap (the same shard twice, or
a field in two folders); a shard that is missing or was interrupted is reported, and the merged
summary.json says so. Wells and treatments follow from the merged field rows, so a well split
across shards is aggregated over all its fields.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.result_files import read_results, write_results
from appliance.result_rows import field_key, row_order
from appliance.results import PlateResults, ResultsError, utc_now

# Summary entries every shard must agree on.
SAME = ("plate", "layout", "precision", "fit")
SAME_MODEL = ("run_id", "weights_sha256")


class MergeError(ValueError):
    """The folders cannot be merged; the message names the folder and what disagrees."""


def read_shard(out_dir: Path) -> PlateResults:
    try:
        return read_results(out_dir)
    except ResultsError as exc:
        raise MergeError(f"{exc}; not a classify results folder to merge") from exc


def check_same(shards: list[PlateResults]) -> None:
    first = shards[0]
    for shard in shards[1:]:
        disagreements = [(key, shard.run.get(key), first.run.get(key)) for key in SAME]
        disagreements += [
            (f"model {key}", shard.run["model"].get(key), first.run["model"].get(key)) for key in SAME_MODEL
        ]
        disagreements.append(("model labels", shard.labels, first.labels))
        for what, value, expected in disagreements:
            if value != expected:
                model = "; shards of one plate must use the same model" if what.startswith("model") else ""
                raise MergeError(f"{shard.out_dir}: {what} {value!r}, but {first.out_dir} has {expected!r}{model}")
        if (shard.embeddings is None) != (first.embeddings is None):
            raise MergeError(
                f"{shard.out_dir}: embeddings {'absent' if shard.embeddings is None else 'present'}, "
                f"unlike {first.out_dir}"
            )


def shard_numbers(shards: list[PlateResults]) -> tuple[int, list[int]]:
    """N and the missing shard indices; the same shard twice is an overlap."""
    numbers = [tuple(int(v) for v in shard.run["shard"].split("/")) for shard in shards]
    if len({count for _, count in numbers}) != 1:
        raise MergeError(f"the folders were split differently ({', '.join(s.run['shard'] for s in shards)})")
    seen: dict[int, Path] = {}
    for (index, count), shard in zip(numbers, shards, strict=True):
        if index in seen:
            raise MergeError(f"{shard.out_dir} and {seen[index]} are both shard {index}/{count}: they overlap")
        seen[index] = shard.out_dir
    count = numbers[0][1]
    return count, sorted(set(range(count)) - set(seen))


def joined(shards: list[PlateResults]) -> tuple[list[dict], list[dict], np.ndarray | None]:
    """Every shard's fields (refusing a field in two folders), failures and embeddings, in plate order."""
    owner: dict[tuple, Path] = {}
    for shard in shards:
        for row in shard.fields:
            key = field_key(row)
            if key in owner:
                raise MergeError(
                    f"field {key[1]} site {key[2]} is in both {owner[key]} and {shard.out_dir}: they overlap"
                )
            owner[key] = shard.out_dir
    fields = [row for shard in shards for row in shard.fields]
    order = sorted(range(len(fields)), key=lambda i: row_order(fields[i]))
    failures = sorted((row for shard in shards for row in shard.failures if field_key(row) not in owner), key=row_order)
    if shards[0].embeddings is None:
        return [fields[i] for i in order], failures, None
    vectors = [s.embeddings for s in shards if len(s.embeddings)]  # a shard without fields has no width
    embeddings = np.concatenate(vectors)[order] if vectors else np.empty((0, 0), dtype=np.float32)
    return [fields[i] for i in order], failures, embeddings


def merged_distance(runs: list[dict]) -> dict:
    """The shards' distance summary (one model, one threshold), flagged fields summed."""
    return {**runs[0]["distance"], "flagged": sum((r.get("distance") or {}).get("flagged", 0) for r in runs)}


def merge_results(out_dirs: list[Path], merged: Path) -> dict:
    """Write the merged results folder; returns its summary (also merged/summary.json)."""
    dirs = [Path(d).resolve() for d in out_dirs]
    merged = Path(merged).resolve()
    if not dirs:
        raise MergeError("no results folders to merge")
    if merged in dirs:
        raise MergeError(f"{merged}: the merged folder must not be one of the folders merged")
    shards = [read_shard(d) for d in dirs]
    check_same(shards)
    count, missing = shard_numbers(shards)
    fields, failures, embeddings = joined(shards)

    runs = [shard.summary for shard in shards]
    first, incomplete = runs[0], [str(s.out_dir) for s in shards if s.run.get("interrupted")]
    return write_results(
        PlateResults(
            merged,
            shards[0].labels,
            shards[0].channels,
            fields,
            failures,
            {
                "plate": first["plate"],
                "plate_dir": first.get("plate_dir"),
                "layout": first["layout"],
                "shard": f"merged {len(dirs)} of {count}",
                "precision": first["precision"],
                "fit": first.get("fit"),
                "model": first["model"],
                "cpa": any(r.get("cpa") for r in runs),
                "plate_wells": first.get("plate_wells"),  # shards classified with --cpa: the plate's in CPA too
                "versions": first.get("versions", {}),
                "counts": {
                    "fields": sum(r["counts"]["fields"] for r in runs),
                    "skipped_done": sum(r["counts"]["skipped_done"] for r in runs),
                },
                "timings": {
                    k: round(sum(r["timings"].get(k, 0.0) for r in runs), 3)
                    for k in ("discover_s", "classify_s", "total_s")
                },
                "fields_per_s": round(sum(r.get("fields_per_s", 0.0) for r in runs), 3),  # hosts run side by side
                "interrupted": bool(incomplete or missing),
                "finished": utc_now(),
                **({"distance": merged_distance(runs)} if first.get("distance") else {}),
                "merged_from": [str(d) for d in dirs],
                "missing_shards": [f"{i}/{count}" for i in missing],
                "incomplete_shards": incomplete,
            },
            embeddings,
            {key: thumb for shard in shards for key, thumb in (shard.thumbnails or {}).items()},
        )
    )

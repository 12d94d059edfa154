"""A plate's results as one object: built once from the classified fields, written once, read back whole.

classify builds a PlateResults from its committed chunks, merge from the shards' results; both
write it with `appliance.result_files.write_results`, and the report is rendered from it, never
from files read back. Wells and treatments are derived from the field rows alone, so the object
`read_results` rebuilds from disk has the same wells, treatments, summary and report as the one
that was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from appliance.result_rows import cellprofiler_rows, column_notes, treatment_rows, well_rows

FIELDS_CSV, FIELDS_PARQUET, WELLS_CSV, TREATMENTS_CSV = "fields.csv", "fields.parquet", "wells.csv", "treatments.csv"
FAILURES_CSV, EMBEDDINGS_PARQUET, PROFILES_PARQUET = "failures.csv", "embeddings.parquet", "profiles.parquet"
GALLERY_NPZ = "gallery.npz"
PLATE_MAP_PNG, REPORT_HTML = "plate_map.png", "report.html"
CPA_PROPERTIES, CPA_DB = "cpa.properties", "cpa.db"  # CellProfiler Analyst's, with classify --cpa
SUMMARY_JSON = "summary.json"  # written last: where it is, the whole set is


# Files that mark a folder as one this project wrote results into: a plate's results (a partial one
# too), a training run, a watcher's results.
RESULTS_MARKERS = (SUMMARY_JSON, ".partial", "run.json", "watch-ledger.json")
OLD_DEFAULT_SUFFIX = "-results"  # before results/<plate>/, classify wrote <plate>-results beside the plate


def is_results_folder(folder: Path) -> bool:
    """A folder of our results (by its marker files or the old default name), or one holding only such
    folders (results/ itself)."""
    folder = Path(folder)

    def marked(path: Path) -> bool:
        return path.name.endswith(OLD_DEFAULT_SUFFIX) or any((path / marker).exists() for marker in RESULTS_MARKERS)

    if not folder.is_dir():
        return False
    inside = [p for p in folder.iterdir() if p.is_dir()]
    return marked(folder) or (bool(inside) and all(map(marked, inside)))


class ResultsError(RuntimeError):
    """A results folder that is not this run's to use: another run's results, or an incomplete set.
    `path`: the damaged file, when one file of the set cannot be read."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(eq=False)  # eq=False: the embeddings array has no single truth value
class PlateResults:
    """One plate's (or one shard's) results.

    run: what the fields cannot tell: plate, plate_dir, layout, shard, precision, fit, model (xml,
    run id, weights hash), versions, counts (fields found, skipped_done), timings, fields_per_s,
    interrupted, finished, and run_key (classify) or merged_from / missing_shards (merge).
    """

    out_dir: Path
    labels: tuple[str, ...]
    channels: tuple[str, ...]
    fields: list[dict]  # field rows in plate order (result_rows.field_columns; numbered here)
    failures: list[dict]  # failure rows in plate order
    run: dict
    embeddings: np.ndarray | None = None  # (fields, width) float32, row i belongs to fields[i]
    thumbnails: dict | None = None  # field key -> (C, h, w) uint16 thumbnail, for the gallery (appliance/gallery.py)
    wells: list[dict] = field(init=False)
    treatments: list[dict] = field(init=False)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.labels, self.channels = tuple(self.labels), tuple(self.channels)
        if self.embeddings is not None and len(self.embeddings) != len(self.fields):
            raise ValueError(f"{len(self.embeddings)} embeddings for {len(self.fields)} fields")
        self.fields = cellprofiler_rows(self.fields, self.channels)  # ImageNumber in plate order, URL_
        self.wells = well_rows(self.fields, self.labels)
        self.treatments = treatment_rows(self.wells, self.labels)

    @property
    def files(self) -> dict[str, str]:
        """{kind: file name} of the set, summary.json aside; treatments, embeddings, gallery only when there are any."""
        files = {"fields": FIELDS_CSV, "fields_parquet": FIELDS_PARQUET, "wells": WELLS_CSV, "failures": FAILURES_CSV}
        if self.treatments:
            files["treatments"] = TREATMENTS_CSV
        if self.embeddings is not None:
            files["embeddings"] = EMBEDDINGS_PARQUET
            files["profiles"] = PROFILES_PARQUET  # well-level medians of the embeddings
        if self.run.get("cpa"):
            files["cpa_properties"], files["cpa_db"] = CPA_PROPERTIES, CPA_DB
        if self.thumbnails:
            files["gallery"] = GALLERY_NPZ
        files["report"] = REPORT_HTML
        return files

    @property
    def summary(self) -> dict:
        """summary.json's content: the run, with what the rows say (counts, labels, files) taken from them."""
        counts = self.run.get("counts") or {}
        return {
            **self.run,
            "out": str(self.out_dir),
            "model": {**(self.run.get("model") or {}), "labels": list(self.labels)},
            "counts": {
                "fields": counts.get("fields", len(self.fields) + len(self.failures)),
                "classified": len(self.fields),
                "failed": len(self.failures),
                "skipped_done": counts.get("skipped_done", 0),
            },
            "files": self.files,
            "columns": column_notes(self.labels),
        }

"""A PlateResults on disk: `write_results` writes the set once, `read_results` rebuilds the object from it.

The set: fields.csv + fields.parquet, wells.csv, failures.csv, treatments.csv (when compounds are
known), embeddings.parquet + profiles.parquet (when asked for), cpa.properties + cpa.db (with
--cpa, appliance.cpa), gallery.npz (thumbnails), plate_map.png + report.html, and summary.json.
Numbers in the CSVs are written exactly (shortest round-trip text), column types come from
result_rows.column_kind. The whole set is built first in OUT/.incoming (each file through
appliance.files: flushed, renamed, synced), summary.json last; only then is it moved over the
earlier set, by renames that need no space. So a full disk leaves the earlier set whole, and a
crash while moving in is finished by the next run that writes the folder. summary.json is removed
first and moved in last: where it is, every file beside it belongs to it. fields.parquet keeps the
types, so it is what `read_results` reads; wells and treatments follow from the fields.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.cpa import write_cpa
from appliance.files import WriteError, sync, write_atomically, write_json
from appliance.gallery import read_gallery, write_gallery
from appliance.report import write_report
from appliance.result_rows import (
    EMBEDDING_PREFIX,
    FAILURE_COLUMNS,
    OLD_EMBEDDING_PREFIX,
    channels_of,
    column_kind,
    embedding_columns,
    field_columns,
    field_key,
    profile_columns,
    treatment_columns,
    well_columns,
    well_profiles,
)
from appliance.results import (
    CPA_DB,
    CPA_PROPERTIES,
    EMBEDDINGS_PARQUET,
    FAILURES_CSV,
    FIELDS_CSV,
    FIELDS_PARQUET,
    GALLERY_NPZ,
    PROFILES_PARQUET,
    SUMMARY_JSON,
    TREATMENTS_CSV,
    WELLS_CSV,
    PlateResults,
    ResultsError,
)
from appliance.safe_text import neutralise_formula, restore_formula

KEY_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
INCOMING = ".incoming"  # OUT/.incoming: where the next set is built whole before it is moved in


def csv_value(value) -> str:
    """A cell: numbers exactly (the shortest text that reads back as the same float: 1e-07, 0.1), NaN and None empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if value == value else ""
    return neutralise_formula(value) if isinstance(value, str) else str(value)  # text: never a formula


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([csv_value(row.get(c)) for c in columns] for row in rows)

    return write_atomically(path, write)


def arrow_type(column: str):
    kind = column_kind(column)
    if kind is int:
        return pa.int64()
    if kind is bool:  # Classify_Correct (empty where the class is unknown), Classify_LowConfidence
        return pa.bool_()
    if kind is float:  # the embedding's features stay float32, as the model gives them
        return pa.float32() if column.startswith(EMBEDDING_PREFIX) else pa.float64()
    return pa.string()


def to_table(columns: list[str], rows: list[dict]) -> pa.Table:
    schema = pa.schema([(c, arrow_type(c)) for c in columns])
    return pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows], schema=schema)


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def features_table(columns: list[str], rows: list[dict], vectors: np.ndarray) -> pa.Table:
    """The Metadata_ columns of columns from rows, then the features, one float32 column each."""
    names = [c for c in columns if not c.startswith(EMBEDDING_PREFIX)]
    arrays = [pa.array([row[c] for row in rows], type=arrow_type(c)) for c in names]
    arrays += [pa.array(np.ascontiguousarray(vectors[:, i], dtype=np.float32)) for i in range(vectors.shape[1])]
    return pa.Table.from_arrays(arrays, names=columns)


def embeddings_table(fields: list[dict], vectors: np.ndarray, labels, channels) -> pa.Table:
    """embeddings.parquet: a field per row, every Metadata_ column of fields.csv, Image_MCNN_000... features."""
    return features_table(embedding_columns(labels, channels, vectors.shape[1]), fields, vectors)


def profiles_table(fields: list[dict], vectors: np.ndarray) -> pa.Table:
    """profiles.parquet: a well per row, the median of its fields' features."""
    rows, medians = well_profiles(fields, vectors)
    return features_table(profile_columns(vectors.shape[1]), rows, medians)


def write_set(results: PlateResults, folder: Path) -> dict:
    """Write every file of the set into folder once, summary.json last; returns the summary."""
    labels = results.labels
    columns, fields = field_columns(labels, results.channels), results.fields
    write_csv(folder / FIELDS_CSV, columns, fields)
    write_parquet(folder / FIELDS_PARQUET, to_table(columns, fields))
    write_csv(folder / WELLS_CSV, well_columns(labels), results.wells)
    write_csv(folder / FAILURES_CSV, FAILURE_COLUMNS, results.failures)
    if results.treatments:
        write_csv(folder / TREATMENTS_CSV, treatment_columns(labels), results.treatments)
    if results.embeddings is not None:
        vectors = results.embeddings
        write_parquet(folder / EMBEDDINGS_PARQUET, embeddings_table(fields, vectors, labels, results.channels))
        write_parquet(folder / PROFILES_PARQUET, profiles_table(fields, vectors))
    if results.thumbnails:
        write_gallery(folder / GALLERY_NPZ, results.thumbnails)
    if results.run.get("cpa"):
        write_cpa(results, folder)
    write_report(results, folder)
    summary = results.summary
    write_json(folder / SUMMARY_JSON, summary)
    return summary


def move_in(out: Path) -> None:
    """Move the whole set OUT/.incoming holds into OUT, summary.json last. Renames within one folder take no
    space, so a full disk cannot stop this half-way; a crash can, and then the next run writing OUT finishes
    it (the staged summary.json says the staged set is whole)."""
    staging = out / INCOMING
    listed = json.loads((staging / SUMMARY_JSON).read_text(encoding="utf-8")).get("files", {}).values()
    (out / SUMMARY_JSON).unlink(missing_ok=True)  # from here on the folder vouches for no set until the new one is in
    sync(out)
    for name in sorted(set(os.listdir(staging)) - {SUMMARY_JSON}):
        os.replace(staging / name, out / name)
    optional = {TREATMENTS_CSV, EMBEDDINGS_PARQUET, PROFILES_PARQUET, CPA_PROPERTIES, CPA_DB, GALLERY_NPZ}
    for name in optional - set(listed):
        (out / name).unlink(missing_ok=True)  # an earlier set's file must not pass for this one's
    sync(out)
    os.replace(staging / SUMMARY_JSON, out / SUMMARY_JSON)
    staging.rmdir()
    sync(out)


def finish_incoming(out: Path) -> None:
    """A staged set a crash left: moved in if it is whole (its summary.json is there), else removed."""
    staging = out / INCOMING
    if (staging / SUMMARY_JSON).is_file():
        move_in(out)
    elif staging.exists():
        shutil.rmtree(staging)


def write_results(results: PlateResults) -> dict:
    """Build the whole set in OUT/.incoming, then move it in over the earlier one; returns the summary.

    A failure while building (a full disk) leaves the earlier set in OUT whole and untouched."""
    out = results.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        finish_incoming(out)
        (out / INCOMING).mkdir()
        summary = write_set(results, out / INCOMING)
    except OSError as exc:
        shutil.rmtree(out / INCOMING, ignore_errors=True)
        earlier = (
            "the results already there are whole and unchanged"
            if (out / SUMMARY_JSON).is_file()
            else "no results were written there"
        )
        raise WriteError(f"{out}: cannot write the results ({exc}); {earlier}") from exc
    try:
        move_in(out)
    except OSError as exc:
        raise WriteError(
            f"{out}: cannot move the new results in ({exc}); they are whole in {out / INCOMING}, "
            "and the next run (or merge) moves them in"
        ) from exc
    return summary


def read_summary(path: Path) -> dict:
    if not path.is_file():
        raise ResultsError(
            f"{path}: missing, so {path.parent} holds no complete results (classify and merge write it last)"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(summary, dict) or not (summary.get("model") or {}).get("labels"):
        raise ResultsError(f"{path}: not a results summary (no model labels)")
    return summary


def read_failures(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{key: restore_formula(value) for key, value in row.items()} for row in csv.DictReader(f)]
    return [{**row, "Metadata_Site": int(row["Metadata_Site"])} for row in rows]


def read_embeddings(path: Path, fields: list[dict]) -> np.ndarray:
    """embeddings.parquet as a (fields, width) matrix in the order of fields."""
    table = pq.read_table(path)
    names = [n for n in table.column_names if n.startswith(EMBEDDING_PREFIX)] or [
        n for n in table.column_names if n.startswith(OLD_EMBEDDING_PREFIX)
    ]
    vectors = (
        np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float32)
        if names
        else np.empty((table.num_rows, 0), dtype=np.float32)
    )
    row_of = {field_key(row): i for i, row in enumerate(table.select(KEY_COLUMNS).to_pylist())}
    missing = [key for key in map(field_key, fields) if key not in row_of]
    if missing:
        raise ResultsError(f"{path}: no embedding for {len(missing)} field(s), e.g. {missing[0]}")
    return vectors[[row_of[field_key(row)] for row in fields]]


def read_part(path: Path, read):
    """read(path), or ResultsError naming the damaged file (its `path`)."""
    try:
        return read(path)
    except ResultsError:
        raise
    except (OSError, ValueError, KeyError, csv.Error, pa.ArrowException) as exc:
        raise ResultsError(f"{path}: unreadable ({exc})", path=path) from exc


def read_results(out_dir: Path) -> PlateResults:
    """The PlateResults a complete results folder holds (ResultsError when it holds none, or not whole)."""
    out_dir = Path(out_dir)
    if not (out_dir / SUMMARY_JSON).is_file() and (out_dir / INCOMING / SUMMARY_JSON).is_file():
        raise ResultsError(  # not moved in here: reading must not race the writer that may be doing it
            f"{out_dir}: a run stopped while moving its results in from {INCOMING}; "
            "rerun the same classify (or merge) to finish"
        )
    summary = read_summary(out_dir / SUMMARY_JSON)
    listed = summary.get("files") or {}
    optional = [name for kind, name in (("embeddings", EMBEDDINGS_PARQUET), ("gallery", GALLERY_NPZ)) if kind in listed]
    for name in (FIELDS_PARQUET, FAILURES_CSV, *optional):
        if not (out_dir / name).is_file():
            raise ResultsError(f"{out_dir / name}: missing, though {SUMMARY_JSON} lists it", path=out_dir / name)
    table = read_part(out_dir / FIELDS_PARQUET, pq.read_table)
    fields = read_part(out_dir / FIELDS_PARQUET, lambda _: table.to_pylist())  # decoding can fail too
    failures = read_part(out_dir / FAILURES_CSV, read_failures)
    embeddings = (
        read_part(out_dir / EMBEDDINGS_PARQUET, lambda path: read_embeddings(path, fields))
        if "embeddings" in listed
        else None
    )
    thumbnails = read_part(out_dir / GALLERY_NPZ, read_gallery) if "gallery" in listed else None
    run = {k: v for k, v in summary.items() if k not in ("out", "files")}  # derived again by PlateResults
    return PlateResults(
        out_dir,
        summary["model"]["labels"],
        channels_of(table.column_names),
        fields,
        failures,
        run,
        embeddings,
        thumbnails,
    )

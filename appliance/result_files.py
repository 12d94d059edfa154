"""A PlateResults on disk: `write_results` writes the set once, `read_results` rebuilds the object from it.

The set: fields.csv + fields.parquet, wells.csv, failures.csv, treatments.csv (when compounds are
known), embeddings.parquet + profiles.parquet (when asked for), cpa.properties + cpa.db (with
--cpa, appliance.cpa), plate_map.png + report.html, and summary.json. Numbers in the CSVs are
written exactly (shortest round-trip text), column types come from result_rows.column_kind. Each
file is written once through appliance.files (a reader or a crash never sees half a file), and
summary.json comes last and is removed first: while it is missing the set is incomplete, once it
is there every file beside it belongs to it. fields.parquet keeps the types, so it is what
`read_results` reads; wells and treatments follow from the fields.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.cpa import write_cpa
from appliance.files import write_atomically, write_json
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

KEY_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def csv_value(value) -> str:
    """A cell: numbers exactly (the shortest text that reads back as the same float: 1e-07, 0.1), NaN and None empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if value == value else ""
    return str(value)


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


def write_results(results: PlateResults) -> dict:
    """Write every file of the set once, summary.json last; returns the summary."""
    out, labels = results.out_dir, results.labels
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_JSON).unlink(missing_ok=True)  # an earlier run's summary would vouch for a half-written set
    columns, fields = field_columns(labels, results.channels), results.fields
    write_csv(out / FIELDS_CSV, columns, fields)
    write_parquet(out / FIELDS_PARQUET, to_table(columns, fields))
    write_csv(out / WELLS_CSV, well_columns(labels), results.wells)
    write_csv(out / FAILURES_CSV, FAILURE_COLUMNS, results.failures)
    if results.treatments:
        write_csv(out / TREATMENTS_CSV, treatment_columns(labels), results.treatments)
    if results.embeddings is not None:
        vectors = results.embeddings
        write_parquet(out / EMBEDDINGS_PARQUET, embeddings_table(fields, vectors, labels, results.channels))
        write_parquet(out / PROFILES_PARQUET, profiles_table(fields, vectors))
    if results.thumbnails:
        write_gallery(out / GALLERY_NPZ, results.thumbnails)
    if results.run.get("cpa"):
        write_cpa(results)
    optional = {TREATMENTS_CSV, EMBEDDINGS_PARQUET, PROFILES_PARQUET, CPA_PROPERTIES, CPA_DB, GALLERY_NPZ}
    for name in optional - set(results.files.values()):
        (out / name).unlink(missing_ok=True)  # an earlier run's file must not pass for this run's
    write_report(results)
    summary = results.summary
    write_json(out / SUMMARY_JSON, summary)
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
        return [{**row, "Metadata_Site": int(row["Metadata_Site"])} for row in csv.DictReader(f)]


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


def read_results(out_dir: Path) -> PlateResults:
    """The PlateResults a complete results folder holds (ResultsError when it holds none, or not whole)."""
    out_dir = Path(out_dir)
    summary = read_summary(out_dir / SUMMARY_JSON)
    listed = summary.get("files") or {}
    optional = [name for kind, name in (("embeddings", EMBEDDINGS_PARQUET), ("gallery", GALLERY_NPZ)) if kind in listed]
    for name in (FIELDS_PARQUET, FAILURES_CSV, *optional):
        if not (out_dir / name).is_file():
            raise ResultsError(f"{out_dir / name}: missing, though {SUMMARY_JSON} lists it")
    try:
        table = pq.read_table(out_dir / FIELDS_PARQUET)
        fields = table.to_pylist()
        failures = read_failures(out_dir / FAILURES_CSV)
        embeddings = read_embeddings(out_dir / EMBEDDINGS_PARQUET, fields) if "embeddings" in listed else None
        thumbnails = read_gallery(out_dir / GALLERY_NPZ) if "gallery" in listed else None
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # a damaged .npz raises ValueError or OSError
        raise ResultsError(f"{out_dir}: results unreadable ({exc})") from exc
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

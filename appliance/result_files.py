"""A PlateResults on disk: `write_results` writes the set once, `read_results` rebuilds the object from it.

The set: fields.csv + fields.parquet, wells.csv, failures.csv, treatments.csv (when compounds are
known), embeddings.parquet (when asked for), plate_map.png + report.html, and summary.json. Each
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

from appliance.files import write_atomically, write_json
from appliance.report import write_report
from appliance.result_rows import (
    BIOLOGIST,
    EMBEDDING_PREFIX,
    FAILURE_COLUMNS,
    channels_of,
    embedding_columns,
    field_columns,
    field_key,
    treatment_columns,
    well_columns,
)
from appliance.results import (
    EMBEDDINGS_PARQUET,
    FAILURES_CSV,
    FIELDS_CSV,
    FIELDS_PARQUET,
    SUMMARY_JSON,
    TREATMENTS_CSV,
    WELLS_CSV,
    PlateResults,
    ResultsError,
)

INTEGER_COLUMNS = {"Metadata_Column", "Metadata_Site", "Count_Fields", "Count_Wells"}
KEY_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}" if value == value else ""
    return str(value)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([csv_value(row[c]) for c in columns] for row in rows)

    return write_atomically(path, write)


def arrow_type(column: str):
    if column in INTEGER_COLUMNS or column.startswith("Frame_"):
        return pa.int64()
    if column.startswith(("Probability_", "Classify_Confidence", "Classify_Agreement", "Metadata_Concentration")):
        return pa.float64()
    if column in BIOLOGIST[1:]:  # Classify_Correct (empty where the class is unknown), Classify_LowConfidence
        return pa.bool_()
    if column.startswith(EMBEDDING_PREFIX):
        return pa.float32()
    return pa.string()


def to_table(columns: list[str], rows: list[dict]) -> pa.Table:
    schema = pa.schema([(c, arrow_type(c)) for c in columns])
    return pa.Table.from_pylist([{c: row[c] for c in columns} for row in rows], schema=schema)


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def embeddings_table(fields: list[dict], vectors: np.ndarray) -> pa.Table:
    columns = embedding_columns(vectors.shape[1])
    arrays = [pa.array([row[c] for row in fields], type=arrow_type(c)) for c in KEY_COLUMNS]
    arrays += [pa.array(np.ascontiguousarray(vectors[:, i], dtype=np.float32)) for i in range(vectors.shape[1])]
    return pa.Table.from_arrays(arrays, names=columns)


def write_results(results: PlateResults) -> dict:
    """Write every file of the set once, summary.json last; returns the summary."""
    out, labels = results.out_dir, results.labels
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_JSON).unlink(missing_ok=True)  # an earlier run's summary would vouch for a half-written set
    columns = field_columns(labels, results.channels)
    write_csv(out / FIELDS_CSV, columns, results.fields)
    write_parquet(out / FIELDS_PARQUET, to_table(columns, results.fields))
    write_csv(out / WELLS_CSV, well_columns(labels), results.wells)
    write_csv(out / FAILURES_CSV, FAILURE_COLUMNS, results.failures)
    if results.treatments:
        write_csv(out / TREATMENTS_CSV, treatment_columns(labels), results.treatments)
    if results.embeddings is not None:
        write_parquet(out / EMBEDDINGS_PARQUET, embeddings_table(results.fields, results.embeddings))
    for name in {TREATMENTS_CSV, EMBEDDINGS_PARQUET} - set(results.files.values()):
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
    names = [n for n in table.column_names if n.startswith(EMBEDDING_PREFIX)]
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
    for name in (FIELDS_PARQUET, FAILURES_CSV, *([EMBEDDINGS_PARQUET] if "embeddings" in listed else [])):
        if not (out_dir / name).is_file():
            raise ResultsError(f"{out_dir / name}: missing, though {SUMMARY_JSON} lists it")
    try:
        table = pq.read_table(out_dir / FIELDS_PARQUET)
        fields = table.to_pylist()
        failures = read_failures(out_dir / FAILURES_CSV)
        embeddings = read_embeddings(out_dir / EMBEDDINGS_PARQUET, fields) if "embeddings" in listed else None
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise ResultsError(f"{out_dir}: results unreadable ({exc})") from exc
    run = {k: v for k, v in summary.items() if k not in ("out", "files")}  # derived again by PlateResults
    return PlateResults(
        out_dir, summary["model"]["labels"], channels_of(table.column_names), fields, failures, run, embeddings
    )

"""A plate's result files: one row per field, per well, per treatment, and what could not be classified.

Everything is built from "field rows": one dict per classified field with the columns of
fields.csv, in order (see `field_columns`). Wells and treatments are aggregated from those rows
alone, so `merge` can rebuild them from several shards' fields.parquet. Every file is written
through a temporary file and renamed: a reader, a crash or a full disk never leaves half a table.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.files import write_atomically
from appliance.layouts.base import Failure, Field

FIELDS_CSV, FIELDS_PARQUET, WELLS_CSV = "fields.csv", "fields.parquet", "wells.csv"
TREATMENTS_CSV, FAILURES_CSV, EMBEDDINGS_PARQUET, RUN_JSON = (
    "treatments.csv", "failures.csv", "embeddings.parquet", "run.json")
PLACE = ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column"]
TREATMENT = ["Metadata_Compound", "Metadata_Concentration"]
CALL = ["Classify_Class", "Classify_Confidence"]
FAILURE_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "File", "Reason"]
INTEGER_COLUMNS = {"Metadata_Column", "Metadata_Site", "Count_Fields", "Count_Wells"}


class ResultsError(RuntimeError):
    """The results folder cannot be written (read-only, full) or holds another run's results."""


def probability_column(label: str) -> str:
    """'Actin disruptors' -> 'Probability_Actin_disruptors'."""
    return "Probability_" + re.sub(r"[^0-9A-Za-z]+", "_", label)


def field_columns(labels, channels) -> list[str]:
    return (PLACE + ["Metadata_Site"] + TREATMENT + [f"FileName_{c}" for c in channels] + ["Metadata_Fit"]
            + [probability_column(label) for label in labels] + CALL + ["Model_SHA256", "Model_Precision"])


def well_columns(labels) -> list[str]:
    return (PLACE + TREATMENT + ["Count_Fields"] + [probability_column(label) for label in labels] + CALL
            + ["Classify_Agreement", "Model_Precision"])


def treatment_columns(labels) -> list[str]:
    return (TREATMENT + ["Count_Wells", "Count_Fields"] + [probability_column(label) for label in labels] + CALL
            + ["Classify_Agreement"])


def embedding_columns(width: int) -> list[str]:
    return ["Metadata_Plate", "Metadata_Well", "Metadata_Site"] + [f"Embedding_{i:03d}" for i in range(width)]


def call(probabilities: np.ndarray, labels) -> dict:
    best = int(np.argmax(probabilities))
    return {"Classify_Class": labels[best], "Classify_Confidence": float(probabilities[best])}


def field_row(field: Field, fit_note: str, probabilities: np.ndarray, labels, channels,
              model_sha256: str, precision: str) -> dict:
    """One classified field, keys in fields.csv's column order."""
    row = {"Metadata_Plate": field.plate, "Metadata_Well": field.well, "Metadata_Row": field.row,
           "Metadata_Column": field.column, "Metadata_Site": field.site, "Metadata_Compound": field.compound,
           "Metadata_Concentration": field.concentration}
    row.update({f"FileName_{c}": Path(p).name for c, p in zip(channels, field.paths)})
    row["Metadata_Fit"] = fit_note
    row.update({probability_column(label): float(p) for label, p in zip(labels, probabilities)})
    row.update(call(probabilities, labels))
    row.update({"Model_SHA256": model_sha256, "Model_Precision": precision})
    return row


def failure_row(failure: Failure) -> dict:
    return dict(zip(FAILURE_COLUMNS, (failure.plate, failure.well, failure.site, failure.file, failure.reason)))


def row_order(row: dict):
    """Plate order: row A..Z then AA.., column, site."""
    letters = row["Metadata_Well"].rstrip("0123456789")
    return (row["Metadata_Plate"], len(letters), letters, int(row["Metadata_Well"][len(letters):]),
            int(row["Metadata_Site"]))


def probabilities_of(rows: list[dict], labels) -> np.ndarray:
    return np.array([[row[probability_column(label)] for label in labels] for row in rows], dtype=np.float64)


def aggregate(rows: list[dict], labels, own_class: list[str]) -> dict:
    """Mean probabilities of rows, the class they favour, and the fraction of rows whose own class agrees."""
    mean = probabilities_of(rows, labels).mean(axis=0)
    result = {probability_column(label): float(p) for label, p in zip(labels, mean)}
    result.update(call(mean, labels))
    result["Classify_Agreement"] = sum(c == result["Classify_Class"] for c in own_class) / len(rows)
    return result


def well_rows(fields: list[dict], labels) -> list[dict]:
    """One row per well (fields in plate order): mean of its fields' probabilities."""
    wells: dict[tuple[str, str], list[dict]] = {}
    for row in fields:
        wells.setdefault((row["Metadata_Plate"], row["Metadata_Well"]), []).append(row)
    out = []
    for rows in wells.values():
        first = rows[0]
        out.append({**{k: first[k] for k in PLACE + TREATMENT}, "Count_Fields": len(rows),
                    **aggregate(rows, labels, [r["Classify_Class"] for r in rows]),
                    "Model_Precision": first["Model_Precision"]})
    return out


def treatment_rows(wells: list[dict], labels) -> list[dict]:
    """One row per known (compound, concentration): mean of its wells, each well weighing the same."""
    treatments: dict[tuple, list[dict]] = {}
    for well in wells:
        if well["Metadata_Compound"] not in (None, ""):
            treatments.setdefault((well["Metadata_Compound"], well["Metadata_Concentration"]), []).append(well)
    out = []
    for (compound, concentration), rows in sorted(treatments.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        out.append({"Metadata_Compound": compound, "Metadata_Concentration": concentration,
                    "Count_Wells": len(rows), "Count_Fields": sum(r["Count_Fields"] for r in rows),
                    **aggregate(rows, labels, [r["Classify_Class"] for r in rows])})
    return out


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
    if column in INTEGER_COLUMNS:
        return pa.int64()
    if column.startswith(("Probability_", "Classify_Confidence", "Classify_Agreement", "Metadata_Concentration")):
        return pa.float64()
    if column.startswith("Embedding_"):
        return pa.float32()
    return pa.string()


def to_table(columns: list[str], rows: list[dict]) -> pa.Table:
    schema = pa.schema([(c, arrow_type(c)) for c in columns])
    return pa.Table.from_pylist([{c: row[c] for c in columns} for row in rows], schema=schema)


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def embeddings_table(fields: list[dict], vectors: np.ndarray) -> pa.Table:
    columns = embedding_columns(vectors.shape[1])
    arrays = [pa.array([row[c] for row in fields], type=arrow_type(c)) for c in columns[:3]]
    arrays += [pa.array(np.ascontiguousarray(vectors[:, i], dtype=np.float32)) for i in range(vectors.shape[1])]
    return pa.Table.from_arrays(arrays, names=columns)


def write_results(out_dir: Path, fields: list[dict], failures: list[dict], labels, channels,
                  embeddings: np.ndarray | None = None) -> dict[str, str]:
    """The result files from field rows (plate order) and failure rows; returns {kind: file name}.

    embeddings: (fields, width) float32 in the order of fields, or None for no embeddings.parquet.
    A file this run does not produce (treatments.csv, embeddings.parquet) is removed if an
    earlier run left one, so the folder never mixes two runs.
    """
    out_dir = Path(out_dir)
    wells = well_rows(fields, labels)
    treatments = treatment_rows(wells, labels)
    files = {
        "fields": write_csv(out_dir / FIELDS_CSV, field_columns(labels, channels), fields),
        "fields_parquet": write_parquet(out_dir / FIELDS_PARQUET, to_table(field_columns(labels, channels), fields)),
        "wells": write_csv(out_dir / WELLS_CSV, well_columns(labels), wells),
        "failures": write_csv(out_dir / FAILURES_CSV, FAILURE_COLUMNS, failures),
    }
    if treatments:
        files["treatments"] = write_csv(out_dir / TREATMENTS_CSV, treatment_columns(labels), treatments)
    if embeddings is not None:
        files["embeddings"] = write_parquet(out_dir / EMBEDDINGS_PARQUET, embeddings_table(fields, embeddings))
    for kind, name in (("treatments", TREATMENTS_CSV), ("embeddings", EMBEDDINGS_PARQUET)):
        if kind not in files:
            (out_dir / name).unlink(missing_ok=True)
    return {kind: path.name for kind, path in files.items()}


def read_field_rows(path: Path) -> list[dict]:
    """fields.parquet (or a chunk) back as field rows."""
    return pq.read_table(path).to_pylist()

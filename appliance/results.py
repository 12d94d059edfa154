"""A plate's results as three CSV files: per field, per well, and what could not be classified.

Each file is written through a temporary file and renamed, so a reader (or a crash) never
leaves half a table behind.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from appliance.metadata import CHANNELS
from appliance.plate import Failure, PlateField

FIELDS_CSV, WELLS_CSV, FAILURES_CSV = "fields.csv", "wells.csv", "failures.csv"


def write_csv(path: Path, header: list[str], rows) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def prediction(probabilities: np.ndarray, labels: tuple[str, ...]) -> list[str]:
    """prob_<class> for every class, then the predicted class and its probability."""
    best = int(np.argmax(probabilities))
    return [f"{p:.6f}" for p in probabilities] + [labels[best], f"{probabilities[best]:.6f}"]


def write_fields(path: Path, fields: list[PlateField], probabilities: np.ndarray, labels, precision: str) -> Path:
    header = (["plate", "well", "row", "column", "site"] + [f"file_{c.lower()}" for c in CHANNELS]
              + [f"prob_{label}" for label in labels] + ["predicted_class", "confidence", "precision"])
    rows = ([f.plate, f.well, f.row, f.column, f.site, *(p.name for p in f.paths), *prediction(probs, labels), precision]
            for f, probs in zip(fields, probabilities))
    return write_csv(path, header, rows)


def write_wells(path: Path, fields: list[PlateField], probabilities: np.ndarray, labels, precision: str) -> Path:
    """One row per well: the mean of its fields' probabilities, and the class that mean favours."""
    wells: dict[tuple[str, str], list[int]] = {}
    for i, f in enumerate(fields):  # fields arrive sorted, so wells keep plate order
        wells.setdefault((f.plate, f.well), []).append(i)
    header = (["plate", "well", "n_fields"] + [f"prob_{label}" for label in labels]
              + ["predicted_class", "confidence", "precision"])
    rows = ([plate, well, len(rows), *prediction(probabilities[rows].mean(axis=0), labels), precision]
            for (plate, well), rows in wells.items())
    return write_csv(path, header, rows)


def write_failures(path: Path, failures: list[Failure]) -> Path:
    rows = ([f.plate, f.well, f.site, f.file, f.reason] for f in failures)
    return write_csv(path, ["plate", "well", "site", "file", "reason"], rows)


def write_results(out_dir: Path, fields: list[PlateField], probabilities: np.ndarray,
                  labels, failures: list[Failure], precision: str) -> dict[str, Path]:
    """precision: what the model ran at (f32, bf16, int8), a column of fields.csv and wells.csv."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(fields), len(labels))
    return {
        "fields": write_fields(out_dir / FIELDS_CSV, fields, probabilities, labels, precision),
        "wells": write_wells(out_dir / WELLS_CSV, fields, probabilities, labels, precision),
        "failures": write_failures(out_dir / FAILURES_CSV, failures),
    }

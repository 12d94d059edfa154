"""The rows of a plate's result tables: one per field, per well, per treatment, per failure.

Everything starts from "field rows": one dict per classified field with the columns of
fields.csv (see `field_columns`); ImageNumber and URL_ are added when a PlateResults is built
(`cellprofiler_rows`), so they number and locate the whole plate, merged or not. Wells and
treatments are aggregated from those rows alone, so the same rows always give the same wells,
whether classify has just made them, merge has joined them from shards, or they were read back
from fields.parquet. No file I/O here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from appliance.layouts.base import Failure, Field
from appliance.safe_text import without_file_bytes

PLACE = ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column"]
TREATMENT = ["Metadata_Compound", "Metadata_Concentration"]
CALL = ["Classify_Class", "Classify_Confidence"]
FAILURE_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "File", "Reason"]
# The embedding is a measurement of the whole field, so a CellProfiler image measurement: Image_<category>_<n>,
# the names pycytominer infers as features with image_features=True (its infer_cp_features).
EMBEDDING_PREFIX = "Image_MCNN_"
OLD_EMBEDDING_PREFIX = "Embedding_"  # what older results folders' embeddings.parquet named them


INTEGER_COLUMNS = {
    "ImageNumber",
    "Metadata_Column",
    "Metadata_Site",
    "Count_Fields",
    "Count_Wells",
    "Metadata_Count_Fields",
}
FLOAT_PREFIXES = (
    "Probability_",
    "Classify_Confidence",
    "Classify_Agreement",
    "Classify_Distance",
    "Metadata_Concentration",
)


def column_kind(column: str) -> type:
    """What a column holds, whatever file it is written to: int, bool, float or str (embedding features: float)."""
    if column in INTEGER_COLUMNS or column.startswith("Frame_"):
        return int
    if column in BIOLOGIST[1:]:  # Classify_Correct, Classify_LowConfidence
        return bool
    if column.startswith((*FLOAT_PREFIXES, EMBEDDING_PREFIX)):
        return float
    return str


def probability_column(label: str) -> str:
    """'Actin disruptors' -> 'Probability_Actin_disruptors'."""
    return "Probability_" + re.sub(r"[^0-9A-Za-z]+", "_", label)


def call_columns(labels) -> list[str]:
    """A probability per label, then the call: the columns every table of results has."""
    return [probability_column(label) for label in labels] + CALL


def field_columns(labels, channels) -> list[str]:
    # Where each channel's pixels came from (CellProfiler's names: file, folder, URL, frame in the file), and
    # how they were read: the layout, the plane / time point / projection, the fit.
    read = [f"{kind}_{c}" for c in channels for kind in ("FileName", "PathName", "URL", "Frame")]
    read += ["Metadata_Layout", "Metadata_Source", "Metadata_Fit"]
    # Classify_Distance: how far the field lies from the training fields (appliance/embedding_reference.py)
    return [
        "ImageNumber",
        *PLACE,
        "Metadata_Site",
        *TREATMENT,
        *read,
        *call_columns(labels),
        "Classify_Distance",
        *BIOLOGIST,
        "Model_SHA256",
        "Model_Precision",
    ]


def well_columns(labels) -> list[str]:
    return [
        *PLACE,
        *TREATMENT,
        "Count_Fields",
        *call_columns(labels),
        *BIOLOGIST,
        "Classify_Agreement",
        "Model_Precision",
    ]


def treatment_columns(labels) -> list[str]:
    return [*TREATMENT, "Count_Wells", "Count_Fields", *call_columns(labels), *BIOLOGIST, "Classify_Agreement"]


# --- what a biologist reads beside the call: the annotated class, right or wrong, a near-chance flag ---

BIOLOGIST = ["Metadata_MoA", "Classify_Correct", "Classify_LowConfidence"]
LOW_CONFIDENCE_TIMES_CHANCE = 2.0  # a call is flagged when its probability is below twice chance (1 / classes)
CONCENTRATION_UNIT = "as the plate's metadata gives it; BBBC021's are micromolar (uM)"


def low_confidence_below(labels) -> float:
    """The probability under which a call is flagged: twice chance, capped below certainty (two classes)."""
    return min(LOW_CONFIDENCE_TIMES_CHANCE / len(labels), 0.75)


def biologist_values(moa: str | None, call_row: dict, labels) -> dict:
    """Metadata_MoA (the annotated class, where the plate's metadata knows it: BBBC021's MoA table), whether
    the call is that class (empty where the class is unknown), and whether the call is near chance."""
    known = moa not in (None, "")
    return {
        "Metadata_MoA": moa if known else None,
        "Classify_Correct": (call_row["Classify_Class"] == moa) if known else None,
        "Classify_LowConfidence": call_row["Classify_Confidence"] < low_confidence_below(labels),
    }


def column_notes(labels) -> dict:
    """summary.json's record of the rules behind these columns."""
    return {
        "Classify_LowConfidence": f"Classify_Confidence < {low_confidence_below(labels):.4f} "
        f"({LOW_CONFIDENCE_TIMES_CHANCE:g} x chance, 1/{len(labels)} classes)",
        "low_confidence_below": round(low_confidence_below(labels), 6),
        "Metadata_Concentration": CONCENTRATION_UNIT,
    }


def natural_key(text) -> tuple:
    """Case-insensitive, numbers by value: 'AZ2' < 'az10' < 'b'."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(text or ""))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p.casefold()) for i, p in enumerate(parts) if p)


def shared_moa(rows: list[dict]) -> str | None:
    """The one annotated class of these rows (a well's fields, a treatment's wells), None if unknown or mixed."""
    classes = {row.get("Metadata_MoA") for row in rows}
    return classes.pop() if len(classes) == 1 else None


def feature_columns(width: int) -> list[str]:
    return [f"{EMBEDDING_PREFIX}{i:03d}" for i in range(width)]


def metadata_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c.startswith("Metadata_")]


def embedding_columns(labels, channels, width: int) -> list[str]:
    """embeddings.parquet: every Metadata_ column of fields.csv, then the features."""
    return metadata_columns(field_columns(labels, channels)) + feature_columns(width)


def profile_columns(width: int) -> list[str]:
    """profiles.parquet: a well's place, treatment and field count, then its median features."""
    return [*PLACE, *TREATMENT, "Metadata_Count_Fields", *feature_columns(width)]


def channels_of(columns: list[str]) -> tuple[str, ...]:
    """The channels a fields table names, in order: its FileName_<channel> columns."""
    return tuple(name[len("FileName_") :] for name in columns if name.startswith("FileName_"))


def field_key(row: dict) -> tuple[str, str, int]:
    """What identifies a field (or a failure) on a plate: plate, well, site."""
    return (row["Metadata_Plate"], row["Metadata_Well"], int(row["Metadata_Site"]))


def call(probabilities: np.ndarray, labels) -> dict:
    best = int(np.argmax(probabilities))
    return {"Classify_Class": labels[best], "Classify_Confidence": float(probabilities[best])}


def field_row(
    field: Field,
    fit_note: str,
    probabilities: np.ndarray,
    labels,
    channels,
    model_sha256: str,
    precision: str,
    distance: float | None = None,
) -> dict:
    """One classified field: fields.csv's columns but ImageNumber and URL_ (see cellprofiler_rows); distance
    None when the model has no reference."""
    row = {
        "Metadata_Plate": field.plate,
        "Metadata_Well": field.well,
        "Metadata_Row": field.row,
        "Metadata_Column": field.column,
        "Metadata_Site": field.site,
        "Metadata_Compound": field.compound,
        "Metadata_Concentration": field.concentration,
    }
    frames = field.planes or (None,) * len(channels)
    for c, path, frame in zip(channels, field.paths, frames, strict=True):
        row.update({f"FileName_{c}": Path(path).name, f"PathName_{c}": str(Path(path).parent), f"Frame_{c}": frame})
    row.update({"Metadata_Layout": field.layout, "Metadata_Source": field.source, "Metadata_Fit": fit_note})
    row.update({probability_column(label): float(p) for label, p in zip(labels, probabilities, strict=True)})
    row.update(call(probabilities, labels))
    row["Classify_Distance"] = distance
    row.update(biologist_values(field.moa, row, labels))
    row.update({"Model_SHA256": model_sha256, "Model_Precision": precision})
    return row


def image_url(path_name: str, file_name: str) -> str:
    """CellProfiler's URL_ of a file: a file: URL of its absolute path."""
    return (Path(path_name) / file_name).absolute().as_uri()


def cellprofiler_rows(fields: list[dict], channels) -> list[dict]:
    """Field rows (in plate order) numbered and located as CellProfiler's per-image tables are: ImageNumber
    1, 2, ... in plate order, URL_<channel> from PathName_ and FileName_. Made whenever the rows are
    written, so merged shards and rows read back get one numbering of the whole plate."""
    return [
        {
            **row,
            "ImageNumber": number,
            **{f"URL_{c}": image_url(row[f"PathName_{c}"], row[f"FileName_{c}"]) for c in channels},
        }
        for number, row in enumerate(fields, start=1)
    ]


def well_profiles(fields: list[dict], vectors: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """One profile per well (fields in plate order): its place, treatment and field count, and the median
    of its fields' embeddings (a well-level profile as pycytominer.aggregate's median makes it)."""
    wells: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(fields):
        wells.setdefault((row["Metadata_Plate"], row["Metadata_Well"]), []).append(i)
    rows, medians = [], np.empty((len(wells), vectors.shape[1]), dtype=np.float32)
    for n, members in enumerate(wells.values()):
        first = fields[members[0]]
        rows.append({**{k: first[k] for k in PLACE + TREATMENT}, "Metadata_Count_Fields": len(members)})
        medians[n] = np.median(vectors[members], axis=0)
    return rows, medians


def failure_row(failure: Failure) -> dict:
    """A failure as failures.csv and the report show it: what the file is, never what it holds."""
    values = (failure.plate, failure.well, failure.site, failure.file, without_file_bytes(failure.reason))
    return dict(zip(FAILURE_COLUMNS, values, strict=True))


def row_order(row: dict):
    """Plate order: row A..Z then AA.., column, site."""
    letters = row["Metadata_Well"].rstrip("0123456789")
    return (
        row["Metadata_Plate"],
        len(letters),
        letters,
        int(row["Metadata_Well"][len(letters) :]),
        int(row["Metadata_Site"]),
    )


def probabilities_of(rows: list[dict], labels) -> np.ndarray:
    return np.array([[row[probability_column(label)] for label in labels] for row in rows], dtype=np.float64)


def aggregate(rows: list[dict], labels, own_class: list[str]) -> dict:
    """Mean probabilities of rows, the class they favour, and the fraction of rows whose own class agrees."""
    mean = probabilities_of(rows, labels).mean(axis=0)
    result = {probability_column(label): float(p) for label, p in zip(labels, mean, strict=True)}
    result.update(call(mean, labels))
    result.update(biologist_values(shared_moa(rows), result, labels))
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
        out.append(
            {
                **{k: first[k] for k in PLACE + TREATMENT},
                "Count_Fields": len(rows),
                **aggregate(rows, labels, [r["Classify_Class"] for r in rows]),
                "Model_Precision": first["Model_Precision"],
            }
        )
    return out


def treatment_rows(wells: list[dict], labels) -> list[dict]:
    """One row per known (compound, concentration): mean of its wells, each well weighing the same."""
    treatments: dict[tuple, list[dict]] = {}
    for well in wells:
        if well["Metadata_Compound"] not in (None, ""):
            treatments.setdefault((well["Metadata_Compound"], well["Metadata_Concentration"]), []).append(well)
    out = []
    in_natural_order = sorted(treatments.items(), key=lambda kv: (natural_key(kv[0][0]), kv[0][1] or 0.0))
    for (compound, concentration), rows in in_natural_order:
        out.append(
            {
                "Metadata_Compound": compound,
                "Metadata_Concentration": concentration,
                "Count_Wells": len(rows),
                "Count_Fields": sum(r["Count_Fields"] for r in rows),
                **aggregate(rows, labels, [r["Classify_Class"] for r in rows]),
            }
        )
    return out

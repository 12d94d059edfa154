"""The BBBC021 metadata as published: image table + MoA table -> labelled fields.

The image table has one row per field (three channel files); the MoA table maps a
(compound, concentration) treatment to its mechanism of action. They are joined on the
compound name and the concentration compared as a number ("0.3" == "0.300000").
Copies found in the wild differ in line endings (LF, CRLF, CR), quoting and a UTF-8 BOM;
the csv module with newline="" and utf-8-sig reads them all.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from appliance.layouts.base import CHANNELS, Field
from appliance.tables import MetadataError, read_table

IMAGE_CSV = "BBBC021_v1_image.csv"
MOA_CSV = "BBBC021_v1_moa.csv"

# BBBC021's wavelength number for each stain.
WAVELENGTHS = {"DAPI": 1, "Tubulin": 2, "Actin": 4}

IMAGE_COLUMNS = (
    "TableNumber",
    "ImageNumber",
    "Image_FileName_DAPI",
    "Image_PathName_DAPI",
    "Image_FileName_Tubulin",
    "Image_PathName_Tubulin",
    "Image_FileName_Actin",
    "Image_PathName_Actin",
    "Image_Metadata_Plate_DAPI",
    "Image_Metadata_Well_DAPI",
    "Replicate",
    "Image_Metadata_Compound",
    "Image_Metadata_Concentration",
)
MOA_COLUMNS = ("compound", "concentration", "moa")

SITE_IN_NAME = re.compile(r"_s(\d+)_w\d", re.IGNORECASE)
LISTED = 10  # treatments named in a message; the rest are counted
log = logging.getLogger(__name__)  # unconfigured, warnings still reach stderr (logging's last resort)


def concentration_key(value: str | float) -> float:
    """Concentrations compared as numbers: '0.3', '0.300000' and 3e-1 are one treatment."""
    return round(float(value), 9)


def read_moa_table(path: Path) -> dict[tuple[str, float], str]:
    """(compound, concentration) -> mechanism of action. A treatment listed twice with two MoAs is a
    MetadataError naming both lines (which one is right cannot be guessed); twice with one MoA is fine."""
    return {treatment: moa for treatment, (moa, _) in read_moa_lines(path).items()}


def read_moa_lines(path: Path) -> dict[tuple[str, float], tuple[str, int]]:
    """(compound, concentration) -> (mechanism of action, the line listing it first)."""
    moa: dict[tuple[str, float], tuple[str, int]] = {}
    for line, row in enumerate(read_table(path, MOA_COLUMNS), start=2):
        try:
            treatment = (row["compound"], concentration_key(row["concentration"]))
        except ValueError as exc:
            raise MetadataError(f"{path}, line {line}: bad concentration {row['concentration']!r}") from exc
        if treatment in moa and moa[treatment][0] != row["moa"]:
            first_moa, first_line = moa[treatment]
            raise MetadataError(
                f"{path}: {row['compound']} at {row['concentration']} is {first_moa!r} on line {first_line} "
                f"and {row['moa']!r} on line {line}; a treatment has one mechanism of action"
            )
        moa.setdefault(treatment, (row["moa"], line))
    return moa


def treatments_text(counts: Counter, unit: str) -> str:
    """'taxol@0.3 (12 fields), ...' for the most frequent, and how many more."""
    listed = ", ".join(f"{c}@{k:g} ({n} {unit})" for (c, k), n in counts.most_common(LISTED))
    return listed + (f" and {len(counts) - LISTED} more" if len(counts) > LISTED else "")


def report_unmatched(image_csv: Path, moa_csv: Path, moa: dict, unlabelled: Counter, used: set, total: int) -> None:
    """Say how many fields have no MoA (and of which treatments), and, when some have none, which MoA rows
    match no field (a misspelt compound there makes a class vanish from training without it). With every
    field labelled, unmatched rows are only treatments not on these plates (one week of BBBC021, a
    held-out plate): said at info level."""
    if unlabelled:
        log.warning(
            "%s: %d of %d fields (%d treatments) have no mechanism of action in %s and are left out: %s",
            image_csv,
            sum(unlabelled.values()),
            total,
            len(unlabelled),
            moa_csv.name,
            treatments_text(unlabelled, "fields"),
        )
    unused = Counter({t: line for t, (_, line) in moa.items() if t not in used})
    if unused and not unlabelled:  # every field has its MoA: those rows are treatments these plates do not hold
        log.info("%s: %d of its %d treatments are not on these plates", moa_csv, len(unused), len(moa))
    elif unused:
        ordered = sorted(unused.items(), key=lambda i: i[1])
        rows = ", ".join(f"{c}@{k:g} (line {line}, {moa[(c, k)][0]})" for (c, k), line in ordered[:LISTED])
        rows += f" and {len(ordered) - LISTED} more" if len(ordered) > LISTED else ""  # as treatments_text lists
        log.warning(
            "%s: %d treatment(s) match no field of %s (misspelt?): %s", moa_csv, len(unused), image_csv.name, rows
        )


def site_of(file_name: str) -> int:
    match = SITE_IN_NAME.search(file_name)
    if not match:
        raise ValueError(f"no site (_sN_wN) in file name {file_name!r}")
    return int(match.group(1))


def load_fields(root: Path, labelled_only: bool = True) -> list[Field]:
    """Fields of a BBBC021-layout folder, joined with their MoA (None when unlabelled)."""
    root = Path(root)
    moa = read_moa_lines(root / MOA_CSV)
    image_csv = root / IMAGE_CSV
    fields, unlabelled, used, rows = [], Counter(), set(), read_table(image_csv, IMAGE_COLUMNS)
    for line, row in enumerate(rows, start=2):
        try:
            concentration = float(row["Image_Metadata_Concentration"])
            site = site_of(row["Image_FileName_DAPI"])
        except ValueError as exc:
            raise MetadataError(f"{image_csv}, line {line}: {exc}") from exc
        treatment = (row["Image_Metadata_Compound"], concentration_key(concentration))
        label = moa[treatment][0] if treatment in moa else None
        used.add(treatment)
        if label is None:
            unlabelled[treatment] += 1
        if labelled_only and label is None:
            continue
        path_dapi = row["Image_PathName_DAPI"].replace("\\", "/")
        fields.append(
            Field(
                plate=row["Image_Metadata_Plate_DAPI"],
                well=row["Image_Metadata_Well_DAPI"],
                site=site,
                week=path_dapi.split("/")[0],
                compound=row["Image_Metadata_Compound"],
                concentration=concentration,
                moa=label,
                paths=tuple(
                    root / row[f"Image_PathName_{c}"].replace("\\", "/") / row[f"Image_FileName_{c}"] for c in CHANNELS
                ),
                image_number=int(row["ImageNumber"] or 0),
            )
        )
    if labelled_only:
        report_unmatched(image_csv, root / MOA_CSV, moa, unlabelled, used, len(rows))
    return fields


def class_names(fields: list[Field]) -> list[str]:
    """The sorted MoA names present: the model's output order."""
    return sorted({f.moa for f in fields if f.moa is not None})

"""Plates described by a CellProfiler LoadData CSV, as facilities write them for CellProfiler, for tests.

The CSV has the shape pe2loaddata writes (broadinstitute/pe2loaddata@8d19469:
tests/data/Version7/load_data_version7.csv and transformer.py `write_csv`): `FileName_<Ch>,PathName_<Ch>`
pairs (channels sorted by name, PathName the absolute image folder), then `Metadata_Plate`,
`Metadata_Well` (A01), `Metadata_Site`, `Metadata_Row`, `Metadata_Col`, `Metadata_FieldID`,
`Metadata_PlaneID`; the images are a Harmony export's, `Images/r02c02f01p01-ch1sk1fk1fl1.tiff`.
The URL variant (`URL_<Ch>` with file: URLs, `Frame_<Ch>` pages of one multi-page TIFF per field)
follows the column rules of CellProfiler's LoadData module (CellProfiler/CellProfiler@4b7df30:
src/subpackages/core/cellprofiler_core/modules/loaddata.py; file: URLs as its pathname2url makes
them, utilities/pathname.py).
"""

from __future__ import annotations

import csv
import urllib.request
from pathlib import Path

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images
from tests.appliance.layouts.write_incell import row_number

NAMES = ("OrigDNA", "OrigTubulin", "OrigActin")  # Cell Painting's style of LoadData channel names
TABLE = "load_data.csv"


def write_plate(
    folder: Path,
    images: Images,
    *,
    names=NAMES,
    extra=(),
    paths: str = "absolute",
    urls: bool = False,
    frames: bool = False,
    prefix: str = "",
    table: str = TABLE,
    plate: str | None = None,
) -> Path:
    """Write the fields and their LoadData CSV; returns the folder (CSV named load_data.csv) or the CSV.

    images: (well, site) -> DAPI, Tubulin, Actin (height, width) arrays; names: their LoadData channel
    names; extra: more channels, written as zeros. paths: "absolute" or "relative" PathName_ (or URL_)
    values; urls: URL_<Ch> file: URLs instead of FileName_/PathName_; frames: one multi-page TIFF per
    field (`{well}_s{site}.tiff`, a page per channel) and `Frame_<Ch>` columns; prefix: "Image_" before
    every image column, as CellProfiler's own exports name them; plate: Metadata_Plate (default: the
    folder's name).
    """
    images_dir = folder / "Images"
    images_dir.mkdir(parents=True, exist_ok=True)
    channels = list(names) + list(extra)
    order = sorted(range(len(channels)), key=lambda i: channels[i])  # pe2loaddata sorts channels by name
    rows = []
    for (well, site), arrays in sorted(images.items()):
        letter, column = parse_well(well)
        planes = list(arrays) + [np.zeros_like(arrays[0])] * len(extra)
        if frames:
            files = [images_dir / f"{letter}{column:02d}_s{site}.tiff"] * len(channels)
            tifffile.imwrite(files[0], np.stack(planes), photometric="minisblack")  # a page per channel
        else:
            files = [
                images_dir / f"r{row_number(letter):02d}c{column:02d}f{site:02d}p01-ch{c + 1}sk1fk1fl1.tiff"
                for c in range(len(channels))
            ]
            for path, plane in zip(files, planes):
                tifffile.imwrite(path, plane)
        row = {}
        for c in order:
            shown = files[c] if paths == "absolute" else files[c].relative_to(folder)
            if urls:
                url = shown.as_uri() if shown.is_absolute() else "file:" + urllib.request.pathname2url(str(shown))
                row[f"{prefix}URL_{channels[c]}"] = url
            else:
                row[f"{prefix}FileName_{channels[c]}"] = shown.name
                row[f"{prefix}PathName_{channels[c]}"] = str(shown.parent)
            if frames:
                row[f"{prefix}Frame_{channels[c]}"] = c
        row |= {
            "Metadata_Plate": plate or folder.name,
            "Metadata_Well": f"{letter}{column:02d}",
            "Metadata_Site": site,
            "Metadata_Row": row_number(letter),
            "Metadata_Col": column,
            "Metadata_FieldID": site,
            "Metadata_PlaneID": 1,
        }
        rows.append(row)
    with open(folder / table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder if table == TABLE else folder / table

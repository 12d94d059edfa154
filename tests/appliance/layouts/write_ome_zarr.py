"""OME-Zarr HCS plates written by ome-zarr-py, the OME's own writer, for tests: NGFF 0.4 on Zarr v2
(`.zgroup`/`.zattrs`/`.zarray`) or NGFF 0.5 on Zarr v3 (`zarr.json`, attributes under "ome").

The pattern is ome-zarr-py's HCS tutorial (ome/ome-zarr-py@de247e5:docs/source/advanced/write_hcs_plate.ipynb):
`zarr.open_group(path, mode="w", zarr_format=2 or 3)`, `write_plate_metadata(root, rows, columns,
wells)`, then per well `write_well_metadata(well, images)` and per field `write_image(data, group,
axes=..., omero=...)` (ome_zarr 0.18.0 ome_zarr/writer.py; the group's Zarr format picks NGFF 0.4 or
0.5). Hierarchy and metadata as ome/ngff-spec (branch 0.4 @c38936e, 0.5 @707c131) index.bs
"HCS plate" describe them: plate.zarr/B/2/0 is row B, column 2, field 0; rows and columns list a
whole 96-well (or 384-well) plate, column names without zero padding.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import zarr

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images

with warnings.catch_warnings():  # ome_zarr 0.18's writer makes a deprecated Scaler() default argument at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

LABELS = ("HOECHST 33342", "Alexa 488", "Alexa 568")  # DAPI, Tubulin, Actin as an imager names its dyes
COLORS = {"HOECHST 33342": "0000FF", "Alexa 488": "00FF00", "Alexa 568": "FF0000"}
ZARR_FORMAT = {"0.4": 2, "0.5": 3}


def channel(label: str) -> dict:
    """An omero channel as the NGFF examples give them (color and window are required)."""
    window = {"min": 0, "max": 65535, "start": 0, "end": 1500}
    return {"label": label, "color": COLORS.get(label, "FFFFFF"), "active": True, "window": window}


def write_plate(
    folder: Path,
    images: Images,
    version: str = "0.5",
    name: str = "plate.zarr",
    labels: tuple[str, ...] = LABELS,
    extra_channels: dict[str, np.ndarray] | None = None,
    levels: int = 2,
) -> Path:
    """A plate.zarr in folder holding each (well, site)'s DAPI, Tubulin and Actin; returns its path.

    Each channel is (y, x), (z, y, x) or (t, z, y, x): the image's axes are cyx, czyx or tczyx.
    `labels` names the three channels; `extra_channels` (label -> array like the others) come first,
    before DAPI, so that the model's channels are not the array's first three. `levels`: resolution
    levels written (ome-zarr-py halves y and x for each; only level 0 is read).
    """
    extra = extra_channels or {}
    by_well: dict[tuple[str, int], dict[int, tuple]] = {}
    for (well, site), channels in images.items():
        by_well.setdefault(parse_well(well), {})[site] = channels
    wells = sorted(by_well, key=lambda rc: (len(rc[0]), rc))
    large = any(row > "H" or column > 12 for row, column in wells)
    rows = [chr(ord("A") + i) for i in range(16 if large else 8)]
    columns = [str(c) for c in range(1, 25 if large else 13)]
    path = Path(folder) / name
    root = zarr.open_group(str(path), mode="w", zarr_format=ZARR_FORMAT[version])
    write_plate_metadata(root, rows, columns, [f"{r}/{c}" for r, c in wells], name=name.removesuffix(".zarr"))
    for row, column in wells:
        group = root.require_group(row).require_group(str(column))
        sites = sorted(by_well[row, column])
        write_well_metadata(group, [str(site - 1) for site in sites])
        for site in sites:
            arrays = (*extra.values(), *by_well[row, column][site])
            data = np.stack(arrays, axis=0 if arrays[0].ndim < 4 else 1)  # channels after time, before z
            axes = {3: "cyx", 4: "czyx", 5: "tczyx"}[data.ndim]
            write_image(
                image=data,
                group=group.require_group(str(site - 1)),
                scale_factors=tuple(2**i for i in range(1, levels)),
                axes=axes,
                storage_options={"chunks": (1,) * (data.ndim - 2) + data.shape[-2:]},
                omero={"channels": [channel(label) for label in (*extra, *labels)]},
            )
    return path

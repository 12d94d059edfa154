"""Plates acquired as multi-position files: Zeiss CZI, Nikon ND2, Leica LIF, read through bioio.

An imager that writes a whole plate (or a well) into one file stores each stage position as a
scene (CZI) or a series (ND2 XY loop, LIF image) and says in the file's metadata which well the
position lies in. bioio (the optional extra `[formats]`: bioio with its CZI, ND2 and LIF
plugins) reads them: each scene whose well the file states is a field, its site the position's
number within its well (counted from 1 over the plate's files in name order, then scenes in
file order); a scene without a well is a Failure. The well comes from bioio's standard metadata
(row, column): in a CZI the scene's `Shape/RowIndex` and `ColumnIndex` under
`Metadata/Information/Image/Dimensions/S/Scenes/Scene` (counted from 0, as ZEN writes them); in
an ND2 or LIF the plugin's well (counted from 1, or a row letter). Channels by the file's
channel names (`--channels DAPI=<name or index from 0>`, else names containing dapi/hoechst,
tubulin, actin/phalloidin, else three channels in order); Z-stacks and time series by
`--plane N` / `--timepoint N` (from 1) or `--project max`, as for every index-based layout.

Tested with CZI files written by pylibCZIrw (the library bioio-czi reads with); ND2 and LIF have
no open writer and are read by the same code untested. Without the extra, `discover` refuses the
plate with the command that installs it; `detect` never imports bioio. A Field's plane is the
(scene, time point, channel, plane) packed into one integer (`pack`); appliance.imageio reads it
with `read_plane`. Not supported: RGB (samples) channels, mosaic tiles (M), files mixing formats.
"""

from __future__ import annotations

import os
from collections import Counter
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError, file_problem, well_name
from appliance.layouts.records import ImageRecord, assemble

NAME = "bioio"
PLUGINS = {".czi": "bioio_czi", ".nd2": "bioio_nd2", ".lif": "bioio_lif"}
SUFFIXES = tuple(PLUGINS)
ROW_BASE = {".czi": 0, ".nd2": 1, ".lif": 1}  # how each plugin counts a numeric well row/column
INSTALL = "pip install 'mcnn-appliance[formats]'"
LOOKS_FOR = "*.czi / *.nd2 / *.lif multi-position files (needs the [formats] extra)"
BITS = 16  # pack(): bits for each of scene, time point, channel, plane


def plate_files(folder: Path) -> list[Path]:
    """The folder's CZI/ND2/LIF files, in name order."""
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if e.name.lower().endswith(SUFFIXES) and e.is_file()]
    except OSError:
        return []
    return sorted(found)


def detect(folder: Path) -> bool:
    return folder.is_dir() and bool(plate_files(folder))


def missing_extra(path: Path) -> str:
    """ "" if bioio and the plugin for path's format are installed, else the message saying how."""
    plugin = PLUGINS[path.suffix.lower()]
    if find_spec("bioio") is None or find_spec(plugin) is None:
        return f"{path}: reading {path.suffix.lower()} files needs the [formats] extra (bioio, {plugin}): {INSTALL}"
    return ""


def pack(scene: int, timepoint: int, channel: int, plane: int) -> int:
    """One integer for a Field's plane: (scene, time point, channel, plane), each from 0."""
    return (((scene << BITS | timepoint) << BITS | channel) << BITS) | plane


def unpack(value: int) -> tuple[int, int, int, int]:
    mask = (1 << BITS) - 1
    return value >> 3 * BITS, value >> 2 * BITS & mask, value >> BITS & mask, value & mask


def open_image(path: Path):
    from bioio import BioImage  # the [formats] extra; only these plates need it

    return BioImage(path)


def read_plane(path: Path, plane: int, check_shape=lambda shape: None) -> np.ndarray:
    """The 2-D plane `pack` described, as the file stores it (appliance.imageio checks it). check_shape((height,
    width)) sees the scene's size as the file's metadata declares it, before any pixel is read."""
    scene, t, c, z = unpack(plane)
    image = open_image(path)
    image.set_scene(scene)
    check_shape((int(image.dims.Y), int(image.dims.X)))
    return np.asarray(image.get_image_data("YX", T=t, C=c, Z=z))


def well_of(row: str | None, column: str | None, base: int) -> str | None:
    """'B02' from bioio's row and column ('1'/'B' and '1' counted from base), or None."""
    if row is None or column is None or not str(column).strip().isdigit():
        return None
    row, column = str(row).strip(), int(column) - base + 1
    if row.isalpha() and len(row) == 1:
        letter = row.upper()
    elif row.isdigit() and 0 <= int(row) - base < 26:
        letter = chr(ord("A") + int(row) - base)
    else:
        return None
    return well_name(letter, column) if column >= 1 else None


def discover(folder: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    files = plate_files(folder)
    if not files:
        raise PlateError(f"{folder}: no *.czi, *.nd2 or *.lif files in the folder")
    for path in files:
        if problem := missing_extra(path):
            raise PlateError(problem)
        if problem := file_problem(path, folder.resolve()):  # the whole plate's images: a link out is refused
            raise PlateError(f"{path}: {problem}")
    plate, records, names, failures, sites = folder.name, [], {}, [], Counter()
    for path in files:
        try:
            image = open_image(path)
            scenes = list(image.scenes)
        except Exception as exc:  # each plugin raises its own types for a damaged file
            raise PlateError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
        for s, scene in enumerate(scenes):
            try:
                image.set_scene(s)
                meta, dims, channels = image.standard_metadata, image.dims, list(image.channel_names)
            except Exception as exc:
                failures.append(Failure(plate, "", 0, f"{path.name} scene {scene}", f"unreadable: {exc}"))
                continue
            well = well_of(meta.row, meta.column, ROW_BASE[path.suffix.lower()])
            if well is None:
                reason = f"the file does not say which well position {s} ({scene}) is in"
                failures.append(Failure(plate, "", 0, f"{path.name} scene {scene}", reason))
                continue
            for c, channel in enumerate(channels):
                if names.setdefault(str(c), channel) != channel:
                    raise PlateError(
                        f"{path}: channel {c} is {channel!r}, {names[str(c)]!r} in the plate's other files"
                    )
            sites[well] += 1
            records += [
                ImageRecord(well, sites[well], str(c), path, plane=z + 1, timepoint=t + 1, frame=pack(s, t, c, z))
                for t in range(dims.T)
                for c in range(len(channels))
                for z in range(dims.Z)
            ]
    if not records and failures:
        return [], failures  # no scene says its well: each is a Failure
    fields, more = assemble(records, names, options, NAME, folder)
    return fields, failures + more


LAYOUT = Layout(NAME, LOOKS_FOR, detect, discover)

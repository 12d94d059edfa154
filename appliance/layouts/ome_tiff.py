"""Multi-channel OME-TIFF plates: one `*.ome.tif` per field, the channels described in its OME-XML.

Well and site come from the file name (`..._{well}_s{site}...ome.tif`), else from the OME Plate
metadata (the Well holding the file's image; site = position of its WellSample in that Well + 1).
Channels: `--channels DAPI=Hoechst 33342,...` names them (case-insensitive) or gives plane indices
(`DAPI=0`); by default a channel name containing dapi/hoechst is DAPI, tubulin is Tubulin and
actin/phalloidin is Actin; a file whose names match none of these but that has exactly three
channels is read as planes 0, 1, 2. Anything else (two candidates for one channel, some channels
matched and others not) is an error that asks for --channels. Only single z-plane, single
time-point images are read; only the OME-XML is read here, pixels are read by appliance.imageio.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import tifffile

from appliance.layouts.base import CHANNELS, Failure, Field, Layout, LayoutOptions, PlateError, well_name
from appliance.layouts.records import ChannelError, match_channels

NAME = "ome-tiff"
LOOKS_FOR = "*.ome.tif files (OME-TIFF)"
FILE_NAME = re.compile(r"(?:^|_)(?P<row>[A-Z]{1,2})(?P<column>\d{1,3})_s(?P<site>\d+)(?=[_.])", re.IGNORECASE)


def is_ome_tiff(path: Path) -> bool:
    return path.name.lower().endswith((".ome.tif", ".ome.tiff")) and path.is_file()


def is_plate(folder: Path) -> bool:
    return any(is_ome_tiff(p) for p in folder.iterdir())


def read_ome(path: Path) -> tuple[list[str], int, tuple[str, int, int] | None]:
    """(channel names, first IFD of the image, (row, column, site) from the Plate metadata or None)."""
    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
    except Exception as exc:  # tifffile raises many types for damaged files
        raise ValueError(f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    if not xml:
        raise ValueError("no OME-XML metadata in the file")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"unreadable OME-XML ({exc})") from exc
    if root.find("{*}BinaryOnly") is not None:
        raise ValueError("OME metadata lives in a companion file, which is not supported")
    images = root.findall("{*}Image")
    if len(images) > 1:  # a multi-file dataset: keep the image stored in this file
        images = [im for im in images for u in im.iterfind(".//{*}UUID") if u.get("FileName") == path.name]
    if len(images) != 1:
        raise ValueError(f"holds {len(root.findall('{*}Image'))} images; one field per file is expected")
    image = images[0]
    pixels = image.find("{*}Pixels")
    if pixels is None:
        raise ValueError("OME-XML without a Pixels element")
    sizes = {axis: int(pixels.get(f"Size{axis}", "1")) for axis in "CZT"}
    if sizes["Z"] > 1 or sizes["T"] > 1:
        raise ValueError(f"has {sizes['Z']} z-planes and {sizes['T']} time points; one of each is supported")
    channels = pixels.findall("{*}Channel")
    if any(int(c.get("SamplesPerPixel", "1")) != 1 for c in channels):
        raise ValueError("has RGB (several samples per pixel) channels; grayscale channels are expected")
    names = [c.get("Name", "") for c in channels] or [""] * sizes["C"]
    first_ifd = min((int(t.get("IFD", "0")) for t in pixels.findall("{*}TiffData")), default=0)
    return names, first_ifd, plate_position(root, image.get("ID"))


def plate_position(root: ET.Element, image_id: str | None) -> tuple[str, int, int] | None:
    for well in root.iterfind(".//{*}Well"):
        for index, sample in enumerate(well.findall("{*}WellSample")):
            ref = sample.find("{*}ImageRef")
            if ref is not None and ref.get("ID") == image_id:
                row = int(well.get("Row", "0"))  # OME counts rows and columns from 0
                letters = chr(ord("A") + row) if row < 26 else "A" + chr(ord("A") + row - 26)
                return letters, int(well.get("Column", "0")) + 1, index + 1
    return None


def channel_planes(names: list[str], mapping: dict[str, str]) -> tuple[int, ...]:
    """The plane index of each model channel, from --channels (a plane index or a name) or the names."""
    ids = match_channels({str(i): name for i, name in enumerate(names)}, mapping)
    return tuple(int(ids[c]) for c in CHANNELS)


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    plate = plate_dir.name
    files = sorted(p for p in plate_dir.iterdir() if is_ome_tiff(p))
    if not files:
        raise PlateError(f"{plate_dir}: no OME-TIFF files (*.ome.tif) in the folder")
    fields, failures, channel_failures, seen = [], [], 0, {}
    for path in files:
        match = FILE_NAME.search(path.name.rsplit(".ome.", 1)[0] + ".")
        position = (match["row"].upper(), int(match["column"]), int(match["site"])) if match else None
        well, site = (well_name(*position[:2]), position[2]) if position else ("", 0)
        try:
            names, first_ifd, in_plate = read_ome(path)
            position = position or in_plate
            if position is None:
                raise ValueError("no well and site in the file name (..._B02_s1.ome.tif) or the OME Plate metadata")
            well, site = well_name(*position[:2]), position[2]
            planes = channel_planes(names, options.channels)
        except ValueError as exc:  # ChannelError included
            channel_failures += isinstance(exc, ChannelError)
            failures.append(Failure(plate, well, site, path.name, str(exc)))
            continue
        if (well, site) in seen:
            failures.append(
                Failure(
                    plate, well, site, f"{seen[(well, site)]}; {path.name}", "more than one file for this well and site"
                )
            )
            fields = [f for f in fields if (f.well, f.site) != (well, site)]
            continue
        seen[(well, site)] = path.name
        fields.append(
            Field(plate, well, site, (path,) * len(CHANNELS), planes=tuple(first_ifd + p for p in planes), layout=NAME)
        )
    # A channel map that fits no file is a wrong map, not a plate of failed fields.
    if channel_failures == len(files):
        raise PlateError(
            f"{plate_dir}: the channels of no file match the model's; {failures[0].file}: {failures[0].reason}"
        )
    return fields, failures


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover)

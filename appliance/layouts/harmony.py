"""PerkinElmer / Revvity Harmony plates (Operetta, Operetta CLS, Opera Phenix): one TIFF per plane, and an index.

Harmony 4-7 (and Columbus, exporting as Harmony does) write a measurement as a plate folder whose
`Images/` folder holds the images, named `r02c03f01p01-ch1sk1fk1fl1.tiff` (row, column, field,
plane, channel, time point), and the index: `Index.idx.xml` (namespace .../PEHH/HarmonyV5),
`Index.xml` (.../PEHH/HarmonyV6, or Harmony 5's `<GUID>/HarmonyV7`) or `Index.ref.xml`. The index
may also lie in the plate folder itself, its image paths then leading into a sub-folder. Give
`classify` the plate folder or its `Images/` folder: the plate is named after the plate folder.

Every `<Images>/<Image>` record of the index gives its file (`URL`, relative to the index), well
(`Row`, `Col`, from 1), site (`FieldID`), plane (`PlaneID`), time point (`TimepointID`: from 0 in
Harmony V5 files, from 1 in V7 ones; `--timepoint` takes the number the index gives) and channel
(`ChannelID`), named by the record's `ChannelName` (V5) or by the `ChannelName` of its channel's
`<Maps>/<Map>/<Entry ChannelID>` (V6, V7). File names are never parsed: the index is the truth.
Channels are found by name (`HOECHST 33342` is DAPI; dyes such as `Alexa 488` need
`--channels Tubulin="Alexa 488"`, or the channel id, `Tubulin=2`). Several planes or time points
are refused unless `--plane N`, `--project max` or `--timepoint N` picks them (records.assemble).

Not supported: Columbus' own `MeasurementIndex.ColumbusIDX.xml` exports, URLs to an `http` server,
FLIM series (several images of one channel in one plane fail that field). An image listed but
absent fails its field when it is read; an image path leading out of the plate folder fails its
field here; an index that is not XML or lacks a record's URL, Row, Col, FieldID, PlaneID,
TimepointID or ChannelID is a PlateError naming the index.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError
from appliance.layouts.records import ImageRecord, assemble, local, stream_xml, well_at, whole_numbers

NAME = "harmony"
LOOKS_FOR = (
    "Index.idx.xml, Index.xml or Index.ref.xml in the folder or its Images folder (Harmony: Operetta, Opera Phenix)"
)
INDEX_NAMES = ("Index.idx.xml", "Index.ref.xml", "Index.xml")  # Bio-Formats' order of preference
IMAGE_FOLDERS = ("Images", "images")
NUMBERS = ("Row", "Col", "FieldID", "PlaneID", "TimepointID", "ChannelID")


def find_index(folder: Path) -> tuple[Path, Path] | None:
    """(the index, the plate folder) for a plate folder or its Images folder; None if there is no index."""
    if not folder.is_dir():
        return None
    inside = folder.name.lower() == "images"
    plate = folder.parent if inside else folder
    for place in (folder, *(folder / name for name in IMAGE_FOLDERS), *([folder.parent] if inside else [])):
        for name in INDEX_NAMES:
            if (place / name).is_file():
                return place / name, plate
    return None


def plate_folder(folder: Path) -> Path:
    """The plate folder of a plate given as itself or as its Images folder."""
    return folder.parent if folder.name.lower() == "images" and find_index(folder) else folder


def is_plate(folder: Path) -> bool:
    return find_index(folder) is not None


def image_record(index: Path, element: ET.Element, number: int) -> tuple[ImageRecord, str]:
    """One `<Images>/<Image>` record, and its ChannelName ("" if it has none)."""
    values = {local(child.tag): (child.text or "").strip() for child in element}
    where = f"{index}: image record {number}" + (f" ({values['id']})" if values.get("id") else "")
    if not values.get("URL"):
        raise PlateError(f"{where}: no URL")
    numbers = whole_numbers(values, NUMBERS, where)
    try:
        well = well_at(numbers["Row"], numbers["Col"])
    except ValueError as exc:
        raise PlateError(f"{where}: {exc}") from None
    record = ImageRecord(
        well,
        numbers["FieldID"],
        str(numbers["ChannelID"]),
        index.parent / values["URL"].replace("\\", "/"),
        plane=numbers["PlaneID"],
        timepoint=numbers["TimepointID"],
    )
    return record, values.get("ChannelName", "")


def read_index(index: Path) -> tuple[list[ImageRecord], dict[str, str]]:
    """Every image record of the index, and each channel id's name (the records' own, else the Maps')."""
    records, names, mapped = [], {}, {}
    for tags, element in stream_xml(index, "EvaluationInputData", 2, "a Harmony index"):
        if tags[1:] == ("Images", "Image"):
            record, name = image_record(index, element, len(records) + 1)
            records.append(record)
            if name:
                names.setdefault(record.channel, name)
        elif tags[1:] == ("Maps", "Map"):
            for entry in element.iterfind("{*}Entry"):
                channel, name = (entry.get("ChannelID") or "").strip(), (entry.findtext("{*}ChannelName") or "").strip()
                if channel.isdigit() and name:
                    mapped[str(int(channel))] = name
    channels = sorted({r.channel for r in records}, key=int)
    return records, {c: names.get(c) or mapped.get(c, "") for c in channels}


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    found = find_index(plate_dir)
    if found is None:
        raise PlateError(f"{plate_dir}: no Harmony index ({', '.join(INDEX_NAMES)}) in the folder or its Images folder")
    index, plate = found
    records, names = read_index(index)
    if not records:
        raise PlateError(f"{index}: the Harmony index lists no images")
    return assemble(records, names, options, NAME, plate.resolve())


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover, plate_folder)

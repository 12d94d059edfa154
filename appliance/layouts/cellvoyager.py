"""Yokogawa CellVoyager plates (CV7000, CV8000, CQ1, CQ3000): one TIFF per plane, listed in MeasurementData.mlf.

A measurement is one folder: `MeasurementData.mlf` lists every image, `MeasurementDetail.mrf`
describes the measurement and names its settings file (`<protocol>.mes`), whose channel list
gives each channel's label (`bts:Target`, e.g. `405` or `Hoechst`). Images are named like
`AssayPlate_B02_T0001F001L01A01Z01C01.tif` (CV7000/CV8000) or `Projection/W0014F0001T0001Z000C1.tif`
(CQ3000), but names are never parsed: each `bts:MeasurementRecord` of type IMG gives its file
(the element's text, relative to the folder), well (`bts:Row`, `bts:Column`, from 1), site
(`bts:FieldIndex`), plane (`bts:ZIndex`), time point (`bts:TimePoint`) and channel (`bts:Ch`).
A record made by the imager's own projection (`bts:ZImageProcessing="Maximum"`, Z000 in the
name) is plane 0. A channel acquired by several actions or timelines is told apart as
`L01A02C01` (timeline, action, channel), its label followed by `(L01A02)`.

Channels are named by `--channels` (the channel number, `DAPI=1`, or its label), else by a label
containing dapi/hoechst, tubulin, actin/phalloidin, else three channels are DAPI, Tubulin, Actin
in their order. Several planes or time points are refused unless `--plane N`, `--project max` or
`--timepoint N` picks them (records.assemble). Give `classify` the measurement folder (or its
`Projection/` folder). Without the .mrf or the .mes the channels have numbers only.

Not supported: PNG images (the .mlf says .tif either way), the legacy CV1000
`MeasurementResult.xml`. A well whose only records are ERR (an acquisition error such as a
failed autofocus) is a failure carrying the imager's message; an image listed but absent fails
its field when read; a path leading out of the folder fails its field here; an unreadable .mlf,
.mrf or .mes, or an IMG record without a number it needs, is a PlateError naming the file.
"""

from __future__ import annotations

from pathlib import Path

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError
from appliance.layouts.records import ImageRecord, assemble, local, read_xml, stream_xml, well_at, whole_numbers

MLF = "MeasurementData.mlf"
MRF = "MeasurementDetail.mrf"
NAME = "cellvoyager"
LOOKS_FOR = f"{MLF} in the folder (Yokogawa CellVoyager CV7000/CV8000/CQ1)"
IMAGE_FOLDERS = ("projection",)  # what a CQ3000 writes inside a measurement
NUMBERS = ("Row", "Column", "FieldIndex", "ZIndex", "TimePoint", "Ch")
STEPS = ("TimelineIndex", "ActionIndex")  # 1 when absent


def find_measurement(folder: Path) -> Path | None:
    """The measurement folder (holding MeasurementData.mlf): the folder, or the parent of its Projection folder."""
    if not folder.is_dir():
        return None
    if (folder / MLF).is_file():
        return folder
    if folder.name.lower() in IMAGE_FOLDERS and (folder.parent / MLF).is_file():
        return folder.parent
    return None


def plate_folder(folder: Path) -> Path:
    """The measurement folder of one given as itself or as its Projection folder."""
    return find_measurement(folder) or folder


def is_plate(folder: Path) -> bool:
    return find_measurement(folder) is not None


def attributes(element) -> dict[str, str]:
    """An element's attributes by local name: {'Row': '2', ...} for bts:Row="2"."""
    return {local(key): value.strip() for key, value in element.attrib.items()}


def channel_labels(folder: Path) -> dict[int, str]:
    """Channel number -> label (bts:Target) from the .mes the .mrf names (or the folder's only .mes)."""
    mrf = folder / MRF
    if mrf.is_file():
        name = attributes(read_xml(mrf, "a CellVoyager measurement detail")).get("MeasurementSettingFileName", "")
        mes = folder / Path(name.replace("\\", "/")).name if name else None
    else:
        found = sorted(folder.glob("*.mes"))
        mes = found[0] if len(found) == 1 else None
    if mes is None or not mes.is_file():
        return {}
    labels = {}
    for channel in read_xml(mes, "a CellVoyager measurement setting").iterfind(".//{*}ChannelList/{*}Channel"):
        values = attributes(channel)
        if values.get("Ch", "").isdigit():
            labels[int(values["Ch"])] = values.get("Target") or values.get("Fluorophore", "")
    return labels


def read_measurement(mlf: Path) -> tuple[list[tuple[ImageRecord, str]], dict[str, str]]:
    """(each IMG record with its (timeline, action) as 'L01A01', the text of the first ERR record of each well)."""
    images, errors = [], {}
    for number, (_, element) in enumerate(stream_xml(mlf, "MeasurementData", 1, "a CellVoyager measurement list"), 1):
        values, text = attributes(element), (element.text or "").strip()
        kind = values.get("Type", "")
        if kind not in ("IMG", "ERR"):
            continue
        where = f"{mlf}: {kind} record {number} ({text or 'no file'})"
        numbers = whole_numbers(values, NUMBERS if kind == "IMG" else NUMBERS[:2], where)
        try:
            well = well_at(numbers["Row"], numbers["Column"])
        except ValueError as exc:
            raise PlateError(f"{where}: {exc}") from None
        if kind == "ERR":
            errors.setdefault(well, text or "no message")
            continue
        if not text:
            raise PlateError(f"{where}: names no file")
        numbers |= whole_numbers({k: values.get(k) or "1" for k in STEPS}, STEPS, where)
        action = "L{TimelineIndex:02d}A{ActionIndex:02d}".format(**numbers)
        record = ImageRecord(
            well,
            numbers["FieldIndex"],
            str(numbers["Ch"]),
            mlf.parent / text.replace("\\", "/"),
            plane=0 if values.get("ZImageProcessing") else numbers["ZIndex"],
            timepoint=numbers["TimePoint"],
        )
        images.append((record, action))
    return images, errors


def split_channels(
    images: list[tuple[ImageRecord, str]], labels: dict[int, str]
) -> tuple[list[ImageRecord], dict[str, str]]:
    """The records with their channel ids, and id -> name: the channel number, or L01A02C01 for a channel
    acquired by several actions or timelines."""
    actions: dict[str, set[str]] = {}
    for record, action in images:
        actions.setdefault(record.channel, set()).add(action)
    records, names = [], {}
    for record, action in images:
        number = int(record.channel)
        if len(actions[record.channel]) > 1:
            channel, name = f"{action}C{number:02d}", f"{labels.get(number, '')} ({action})".strip()
            record = ImageRecord(record.well, record.site, channel, record.path, record.plane, record.timepoint)
        else:
            channel, name = record.channel, labels.get(number, "")
        records.append(record)
        names.setdefault(channel, name)
    return records, dict(sorted(names.items(), key=lambda item: (int(item[0][-2:]), item[0])))


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    folder = find_measurement(plate_dir)
    if folder is None:
        raise PlateError(f"{plate_dir}: no {MLF} in the folder (Yokogawa CellVoyager)")
    folder = folder.resolve()
    images, errors = read_measurement(folder / MLF)
    imaged = {record.well for record, _ in images}
    failures = [
        Failure(folder.name, well, 0, MLF, f"the imager reports an acquisition error and no image: {text}")
        for well, text in errors.items()
        if well not in imaged
    ]
    if not images:
        if failures:
            raise PlateError(f"{folder / MLF}: lists no images, only acquisition errors ({failures[0].reason})")
        raise PlateError(f"{folder / MLF}: lists no images")
    records, names = split_channels(images, channel_labels(folder))
    fields, more = assemble(records, names, options, NAME, folder)
    return fields, failures + more


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover, plate_folder)

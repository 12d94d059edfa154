"""Harmony plates laid out as Harmony 4-7 export them (Operetta, Operetta CLS, Opera Phenix), for tests.

<plate>/Images/ holds the index and one single-page uint16 TIFF per plane of each channel,
`r{Row:02d}c{Col:02d}f{FieldID:02d}p{PlaneID:02d}-ch{ChannelID}sk{K}fk1fl1.tiff` (K = time point,
from 1). The index, UTF-8 with a BOM:
- V5: Images/Index.idx.xml, namespace http://www.perkinelmer.com/PEHH/HarmonyV5, Version="1",
  TimepointID from 0, each Image record carrying its ChannelName and channel description.
  Template: leukemia-kispi/operetta-compose@3e372a2:tests/operetta_plate/Images/Index.idx.xml (real).
- V7: Images/Index.xml, namespace 43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7, Version="2",
  TimepointID from 1, the channel descriptions (ChannelName, ...) in the last <Maps>/<Map> after
  a Map of flat-field profiles, the Image records without them.
  Template: broadinstitute/pe2loaddata@8d19469:tests/data/Version7/images/Index.xml (real).
- V6: the V7 document with namespace http://www.perkinelmer.com/PEHH/HarmonyV6, Version="1" and
  TimepointID from 0 (no real V6 sample is public; Bio-Formats PR #3734 says V6 moved the channel
  description out of the Image records, as V7 has it).
Element order, units and constants follow the templates; positions and times are made up.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images, as_stack

NAMESPACES = {
    "V5": ("http://www.perkinelmer.com/PEHH/HarmonyV5", "1", 0, "Index.idx.xml"),
    "V6": ("http://www.perkinelmer.com/PEHH/HarmonyV6", "1", 0, "Index.xml"),
    "V7": ("43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7", "2", 1, "Index.xml"),
}  # version -> (namespace, Version attribute, first TimepointID, index name)
WAVELENGTHS = {"HOECHST 33342": (375, 435), "Alexa 488": (488, 522), "Alexa 568": (561, 599), "Alexa 647": (640, 706)}
NAMES = ("HOECHST 33342", "Alexa 488", "Alexa 568")


def row_number(row: str) -> int:
    """'B' -> 2, 'AA' -> 27."""
    number = 0
    for letter in row:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def description(name: str, shape: tuple[int, int], indent: str) -> tuple[str, str]:
    """A channel's description in two parts (V5 puts the image's position between them in each Image
    record; V6/V7 write them together in a Map Entry)."""
    excitation, emission = WAVELENGTHS.get(name, (0, 0))
    lines = [
        f"<ChannelName>{escape(name)}</ChannelName>",
        "<ImageType>Signal</ImageType>",
        "<AcquisitionType>NonConfocal</AcquisitionType>",
        "<IlluminationType>Epifluorescence</IlluminationType>",
        "<ChannelType>Fluorescence</ChannelType>",
        '<ImageResolutionX Unit="m">1.1959521619135234E-06</ImageResolutionX>',
        '<ImageResolutionY Unit="m">1.1959521619135234E-06</ImageResolutionY>',
        f"<ImageSizeX>{shape[1]}</ImageSizeX>",
        f"<ImageSizeY>{shape[0]}</ImageSizeY>",
        "<BinningX>2</BinningX>",
        "<BinningY>2</BinningY>",
        "<MaxIntensity>65535</MaxIntensity>",
        "<CameraType>AndorZylaCam</CameraType>",
    ]
    optics = [
        f'<MainExcitationWavelength Unit="nm">{excitation}</MainExcitationWavelength>',
        f'<MainEmissionWavelength Unit="nm">{emission}</MainEmissionWavelength>',
        '<ObjectiveMagnification Unit="">10</ObjectiveMagnification>',
        '<ObjectiveNA Unit="">0.3</ObjectiveNA>',
        '<ExposureTime Unit="s">0.006</ExposureTime>',
    ]
    return "".join(f"{indent}{line}\n" for line in lines), "".join(f"{indent}{line}\n" for line in optics)


def image_record(version: str, image_id: str, url: str, key: dict, name: str, shape: tuple[int, int]) -> str:
    head, optics = description(name, shape, "      ")
    position = (
        '      <PositionX Unit="m">-0.000645814</PositionX>\n'
        '      <PositionY Unit="m">0.000645814</PositionY>\n'
        f'      <PositionZ Unit="m">{key["PlaneID"] * 2}E-06</PositionZ>\n'
        '      <AbsPositionZ Unit="m">0.137510493</AbsPositionZ>\n'
        f'      <MeasurementTimeOffset Unit="s">{key["K"] * 600 - 600}</MeasurementTimeOffset>\n'
        "      <AbsTime>2022-12-19T10:19:26.58+01:00</AbsTime>\n"
    )
    numbers = (
        f"      <Row>{key['Row']}</Row>\n      <Col>{key['Col']}</Col>\n"
        f"      <FieldID>{key['FieldID']}</FieldID>\n      <PlaneID>{key['PlaneID']}</PlaneID>\n"
        f"      <TimepointID>{key['TimepointID']}</TimepointID>\n"
    )
    start = (
        f'    <Image Version="1">\n      <id>{image_id}</id>\n      <State>Ok</State>\n      <URL>{escape(url)}</URL>\n'
    )
    channel = f"      <ChannelID>{key['ChannelID']}</ChannelID>\n      <FlimID>1</FlimID>\n"
    if version == "V5":
        matrix = "      <OrientationMatrix>[[1.006463,0.003011,0,-35.6],[0.002440,-1.006450,0,67.3],[0,0,1.33,-15.125]]"
        return f"{start}{numbers}{channel}{head}{position}{optics}{matrix}</OrientationMatrix>\n    </Image>\n"
    sequence = "      <SequenceID>1</SequenceID>\n      <GroupID>1</GroupID>\n"
    return f"{start}{numbers}{sequence}{channel}{position}    </Image>\n"


def maps(version: str, channels: list[tuple[int, str]], shape: tuple[int, int]) -> str:
    """<Maps>: flat-field profiles (V5: only those); V6/V7 add a Map describing each channel."""
    flatfield = "".join(
        f'      <Entry ChannelID="{c}">\n        <FlatfieldProfile>{{Background: {{Character: Null, Mean: NaN, '
        f"Profile: {{Type: Identity}}, Quality: 0.25}}, Channel: {c}, ChannelName: {escape(name)}, "
        "Version: Acapella:2013}</FlatfieldProfile>\n      </Entry>\n"
        for c, name in channels
    )
    text = f"  <Maps>\n    <Map>\n{flatfield}    </Map>\n"
    if version != "V5":
        entries = ""
        for c, name in channels:
            head, optics = description(name, shape, "        ")
            entries += (
                f'      <Entry ChannelID="{c}">\n{head}{optics}'
                '        <ExcitationPower Unit="Percent">20</ExcitationPower>\n'
                "        <OrientationMatrix>[[0.994724,0,0,47.2],[0,-0.994724,0,-7.5],[0,0,1.00,5.597]]"
                "</OrientationMatrix>\n"
                f"        <CropArea>[[0,0],[{shape[1]},{shape[0]}],[{shape[1]},{shape[0]}]]</CropArea>\n"
                "      </Entry>\n"
            )
        text += f"    <Map>\n{entries}    </Map>\n"
    return text + "  </Maps>\n"


def write_plate(
    folder: Path,
    images: Images,
    *,
    version: str = "V5",
    names: tuple[str, ...] = NAMES,
    channel_ids: tuple[int, ...] = (1, 2, 3),
    extra: tuple[str, ...] = (),
    index_in_plate_folder: bool = False,
) -> Path:
    """Write a Harmony export of the fields; returns the plate folder (what a user gives `classify`).

    images: (well, site) -> DAPI, Tubulin, Actin arrays, each (h, w), (planes, h, w) or
    (time points, planes, h, w). names and channel_ids: the channels' ChannelName and ChannelID,
    in that order; extra: names of more channels (zeros), ids following. index_in_plate_folder: the
    index in the plate folder, the images in Images/ (the layout Bio-Formats PR #4314 added).
    """
    namespace, version_attribute, first_timepoint, index_name = NAMESPACES[version]
    channels = list(
        zip((*channel_ids, *range(max(channel_ids) + 1, max(channel_ids) + 1 + len(extra))), (*names, *extra))
    )
    images_dir = folder / "Images"
    images_dir.mkdir(parents=True, exist_ok=True)
    index_dir = folder if index_in_plate_folder else images_dir
    records, wells, shape = [], {}, (0, 0)
    for (well, site), arrays in sorted(images.items()):
        row, column = parse_well(well)
        stacks = [as_stack(np.asarray(a)) for a in arrays]
        stacks += [np.zeros_like(stacks[0])] * len(extra)
        shape = stacks[0].shape[2:]
        for t in range(stacks[0].shape[0]):
            for z in range(stacks[0].shape[1]):
                for (channel, name), stack in zip(channels, stacks):
                    key = {
                        "Row": row_number(row),
                        "Col": column,
                        "FieldID": site,
                        "PlaneID": z + 1,
                        "TimepointID": t + first_timepoint,
                        "ChannelID": channel,
                        "K": t + 1,
                    }
                    file = f"r{key['Row']:02d}c{column:02d}f{site:02d}p{z + 1:02d}-ch{channel}sk{t + 1}fk1fl1.tiff"
                    tifffile.imwrite(images_dir / file, stack[t, z])
                    image_id = f"{key['Row']:02d}{column:02d}K{t + 1}F{site}P{z + 1}R{channel}"
                    url = f"Images/{file}" if index_in_plate_folder else file
                    records.append(image_record(version, image_id, url, key, name, shape))
                    wells.setdefault((key["Row"], column), []).append(image_id)
    rows, columns = (16, 24) if any(r > 8 or c > 12 for r, c in wells) else (8, 12)
    plate = escape(folder.name)
    document = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<EvaluationInputData xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="{version_attribute}" xmlns="{namespace}">\n'
        "  <User>DRPscreening</User>\n  <InstrumentType>Phenix</InstrumentType>\n  <Plates>\n    <Plate>\n"
        f"      <PlateID>{plate}</PlateID>\n"
        "      <MeasurementID>6f2adb32-6c4b-4583-b792-9aefb0aa3cf0</MeasurementID>\n"
        "      <MeasurementStartTime>2022-12-19T10:18:52.2439831+01:00</MeasurementStartTime>\n"
        f"      <Name>{plate}</Name>\n"
        f"      <PlateTypeName>{rows * columns} PerkinElmer CellCarrier Ultra</PlateTypeName>\n"
        f"      <PlateRows>{rows}</PlateRows>\n      <PlateColumns>{columns}</PlateColumns>\n"
        + "".join(f'      <Well id="{r:02d}{c:02d}" />\n' for r, c in wells)
        + "    </Plate>\n  </Plates>\n  <Wells>\n"
        + "".join(
            f"    <Well>\n      <id>{r:02d}{c:02d}</id>\n      <Row>{r}</Row>\n      <Col>{c}</Col>\n"
            + "".join(f'      <Image id="{i}" />\n' for i in ids)
            + "    </Well>\n"
            for (r, c), ids in wells.items()
        )
        + "  </Wells>\n"
        + maps(version, channels, shape)
        + "  <Images>\n"
        + "".join(records)
        + "  </Images>\n</EvaluationInputData>\n"
    )
    (index_dir / index_name).write_text(document, encoding="utf-8-sig")
    return folder

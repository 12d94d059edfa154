"""OME-TIFF plates as the OME-TIFF specification lays them out, for tests.

Sources: the OME-TIFF specification (ome/ome-model-documentation@f8d48e8:ome-tiff/specification.rst:
OME-XML in the ImageDescription of the first IFD of each file, prefaced by the informative
comment; TiffData IFD/FirstC/FirstZ/FirstT/PlaneCount, a UUID child with FileName pointing into
another file of a multi-file dataset, a distinct OME@UUID per file; partial metadata: a file
holding only `<BinaryOnly MetadataFile=... UUID=.../>`, the full XML in a `.companion.ome` or a
master OME-TIFF), the HCS sample (ome/ome-model@8be3f6c:specification/samples/2016-06/hcs.ome.xml:
Plate -> Well Row/Column from 0 -> WellSample Index -> ImageRef) and the schema
(ome/ome-model@8be3f6c:specification/src/main/resources/released-schema/2016-06/ome.xsd:
WellSample@Index "should be unique for a given plate": a running index over the plate, as
Bio-Formats writes it, not the field's number in its well).

tifffile writes the pixels (TiffWriter(ome=True), one series per image) but cannot write Plate
elements, so the writer's own OME-XML replaces the description tifffile wrote, with
tifffile.tiffcomment. Modes:
- "single": one `<plate>.ome.tif` holding every field, one OME Image (series) after another,
  the XML with Plate and every Image in its first IFD.
- "companion": `<plate>.companion.ome` (OME-XML, Plate and every Image, TiffData with UUID
  FileName) and one `<row><column>_f<field>.ome.tif` per field (names as the template
  `A1_f1.ome.tif`) whose XML is BinaryOnly pointing at the companion.
- "multifile": the same files, each carrying the whole XML (its own OME@UUID), no companion.
- "master": the same files, the first carrying the whole XML, the others BinaryOnly pointing at it.
- "fields": `<plate>_<well>_s<site>.ome.tif` per field as tifffile.imwrite writes an OME-TIFF
  (its own OME-XML, one Image, no Plate): the well and site are only in the file name.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images, as_stack

NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
ROOT = (
    f'<OME xmlns="{NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    f'xsi:schemaLocation="{NAMESPACE} {NAMESPACE}/ome.xsd" UUID="{{uuid}}">'
)
WARNING = (  # the informative comment the specification asks to preface the XML in a TIFF with
    "<!-- Warning: this comment is an OME-XML metadata block, which contains\n"
    "crucial dimensional parameters and other important metadata. Please edit\n"
    "cautiously (if at all), and back up the original data before doing so.\n"
    "For more information, see the OME-TIFF documentation:\n"
    "https://docs.openmicroscopy.org/latest/ome-model/ome-tiff/ -->\n"
)
NAMES = ("HOECHST 33342", "Alexa 488", "Alexa 568")
MODES = ("single", "companion", "multifile", "master", "fields")


def write_ome(path: Path, names: list[str], planes: np.ndarray | None = None, **kwargs) -> Path:
    """One OME-TIFF holding one image as tifffile.imwrite writes it: its own OME-XML (one Image, the
    channels' names, no Plate). planes: (channels, height, width); by default 64x80 planes of 10, 20, ..."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if planes is None:
        planes = np.stack([np.full((64, 80), 10 * (i + 1), dtype=np.uint16) for i in range(len(names))])
    tifffile.imwrite(path, planes, metadata={"axes": "CYX", "Channel": {"Name": names}}, **kwargs)
    return path


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def plane_order(order: str, sizes: dict[str, int]) -> list[tuple[int, int, int]]:
    """(c, z, t) of each plane in the rasterisation DimensionOrder gives (its third letter varies fastest)."""
    slow_to_fast = order[:1:-1]  # "XYCZT" -> "TZC"
    planes = []
    for index in np.ndindex(*(sizes[a] for a in slow_to_fast)):
        at = dict(zip(slow_to_fast, index))
        planes.append((at["C"], at["Z"], at["T"]))
    return planes


def image_xml(number: int, name: str, stacks, names, order, tiffdata: list[str]) -> str:
    sizes = {"C": len(stacks), "T": stacks[0].shape[0], "Z": stacks[0].shape[1]}
    height, width = stacks[0].shape[2:]
    channels = "".join(
        f'<Channel ID="Channel:{number}:{c}" Name={quoteattr(n)} SamplesPerPixel="1"/>' for c, n in enumerate(names)
    )
    return (
        f'  <Image ID="Image:{number}" Name={quoteattr(name)}>\n    <Pixels ID="Pixels:{number}" '
        f'DimensionOrder="{order}" Type="uint16" SizeX="{width}" SizeY="{height}" SizeC="{sizes["C"]}" '
        f'SizeZ="{sizes["Z"]}" SizeT="{sizes["T"]}" BigEndian="false" Interleaved="false" SignificantBits="16">\n'
        f"      {channels}\n" + "".join(f"      {t}\n" for t in tiffdata) + "    </Pixels>\n  </Image>\n"
    )


def plate_xml(name: str, fields: list[tuple[str, int]]) -> str:
    """Plate -> Well (Row, Column from 0) -> WellSample (Index: running over the plate) -> ImageRef."""
    wells: dict[tuple[str, int], list[int]] = {}
    for number, (well, _) in enumerate(fields):
        wells.setdefault(parse_well(well), []).append(number)
    large = any(len(r) > 1 or r > "H" or c > 12 for r, c in wells)
    text = (
        f'  <Plate ID="Plate:0" Name={quoteattr(name)} Rows="{16 if large else 8}" Columns="{24 if large else 12}" '
        'RowNamingConvention="letter" ColumnNamingConvention="number">\n'
    )
    for w, ((row, column), numbers) in enumerate(wells.items()):
        row_index = sum((ord(a) - ord("A") + 1) * 26**i for i, a in enumerate(reversed(row))) - 1
        text += f'    <Well ID="Well:{w}" Row="{row_index}" Column="{column - 1}">\n'
        for s, number in enumerate(numbers):
            text += (
                f'      <WellSample ID="WellSample:{w}:{s}" Index="{number}">'
                f'<ImageRef ID="Image:{number}"/></WellSample>\n'
            )
        text += "    </Well>\n"
    return text + "  </Plate>\n"


def tiffdata_xml(planes, first_ifd: int, block: bool, file: tuple[str, str] | None) -> list[str]:
    """TiffData elements for planes stored from first_ifd on, in the order given: one per plane, as
    Bio-Formats writes them, or (block) one for all, its planes following DimensionOrder."""
    ref = f"<UUID FileName={quoteattr(file[0])}>{file[1]}</UUID>" if file else ""
    if block:
        return [f'<TiffData IFD="{first_ifd}" PlaneCount="{len(planes)}">{ref}</TiffData>']
    return [
        f'<TiffData FirstC="{c}" FirstZ="{z}" FirstT="{t}" IFD="{first_ifd + k}" PlaneCount="1">{ref}</TiffData>'
        for k, (c, z, t) in enumerate(planes)
    ]


def write_pages(writer: tifffile.TiffWriter, stacks, planes) -> None:
    """One series of the planes in the order given (tifffile's own OME-XML is replaced afterwards)."""
    writer.write(np.stack([stacks[c][t, z] for c, z, t in planes]), photometric="minisblack", metadata={"axes": "ZYX"})


def write_plate(
    folder: Path,
    images: Images,
    *,
    mode: str = "single",
    names: tuple[str, ...] = NAMES,
    extra: tuple[str, ...] = (),
    order: str = "XYCZT",
    block: bool = False,
    reverse: bool = False,
) -> Path:
    """Write the fields as an OME-TIFF plate in `folder`; returns the folder (what a user gives `classify`).

    images: (well, site) -> DAPI, Tubulin, Actin arrays, each (h, w), (planes, h, w) or (time
    points, planes, h, w). names: the channels' OME names; extra: names of more channels (zeros),
    after them. order: the Pixels' DimensionOrder. block: one TiffData per image (IFD, PlaneCount)
    rather than one per plane (FirstC/FirstZ/FirstT, as Bio-Formats writes); reverse: each image's
    planes stored in reverse order (only one TiffData per plane can say so).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {MODES}")
    if block and reverse:
        raise ValueError("reverse needs one TiffData per plane")
    folder.mkdir(parents=True, exist_ok=True)
    plate = folder.name
    fields = sorted(images, key=lambda key: (parse_well(key[0]), key[1]))
    channel_names = (*names, *extra)
    stacks = {}
    for key in fields:
        own = [as_stack(np.asarray(a)) for a in images[key]]
        stacks[key] = own + [np.zeros_like(own[0])] * len(extra)
    layout = {}  # (well, site) -> its planes (c, z, t) in the order stored
    for key in fields:
        sizes = {"C": len(stacks[key]), "T": stacks[key][0].shape[0], "Z": stacks[key][0].shape[1]}
        planes = plane_order(order, sizes)
        layout[key] = planes[::-1] if reverse else planes
    if mode == "fields":
        for well, site in fields:
            data = np.stack(stacks[well, site], axis=1)  # (T, C, Z, Y, X)
            tifffile.imwrite(
                folder / f"{plate}_{well}_s{site}.ome.tif",
                data,
                photometric="minisblack",
                metadata={"axes": "TCZYX", "Channel": {"Name": list(channel_names)}},
            )
        return folder
    title = {key: f"Well {key[0]}, Field {key[1]}" for key in fields}
    if mode == "single":
        path = folder / f"{plate}.ome.tif"
        images_xml, ifd = "", 0
        with tifffile.TiffWriter(path, ome=True) as writer:
            for number, key in enumerate(fields):
                write_pages(writer, stacks[key], layout[key])
                tiffdata = tiffdata_xml(layout[key], ifd, block, None)
                images_xml += image_xml(number, title[key], stacks[key], channel_names, order, tiffdata)
                ifd += len(layout[key])
        document = ROOT.format(uuid=urn()) + "\n" + plate_xml(plate, fields) + images_xml + "</OME>\n"
        tifffile.tiffcomment(path, ('<?xml version="1.0" encoding="UTF-8"?>\n' + WARNING + document).encode())
        return folder
    # one file per field: companion, multifile, master
    files = {key: (f"{parse_well(key[0])[0]}{parse_well(key[0])[1]}_f{key[1]}.ome.tif", urn()) for key in fields}
    images_xml = "".join(
        image_xml(
            number, title[key], stacks[key], channel_names, order, tiffdata_xml(layout[key], 0, block, files[key])
        )
        for number, key in enumerate(fields)
    )
    metadata_file = (f"{plate}.companion.ome", urn()) if mode == "companion" else files[fields[0]]
    full = plate_xml(plate, fields) + images_xml + "</OME>\n"
    if mode == "companion":
        document = '<?xml version="1.0" encoding="UTF-8"?>\n' + ROOT.format(uuid=metadata_file[1]) + "\n" + full
        (folder / metadata_file[0]).write_text(document, encoding="utf-8")
    for key in fields:
        name, file_uuid = files[key]
        with tifffile.TiffWriter(folder / name, ome=True) as writer:
            write_pages(writer, stacks[key], layout[key])
        if mode == "multifile" or (mode == "master" and name == metadata_file[0]):
            body = full
        else:
            body = (
                f"  <BinaryOnly MetadataFile={quoteattr(metadata_file[0])} UUID={quoteattr(metadata_file[1])}/>\n"
                "</OME>\n"
            )
        xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + WARNING + ROOT.format(uuid=file_uuid) + "\n" + body
        tifffile.tiffcomment(folder / name, xml.encode())
    return folder

"""GE / Cytiva IN Cell Analyzer plates (IN Cell 1000, 2000, 2200, 6000, 6500): one TIFF per plane and a .xdce index.

The IN Cell software writes a plate as one folder holding `{plate}.xdce` (XML, root `<ImageStack>`)
and the images, named like `B - 2(fld 1 wv DAPI - DAPI).tif` (well, field, excitation - emission
filter; some versions add ` z 3`, ` wix 1` or a time). File names are never parsed: the index is
the truth. Every `<Images>/<Image filename=...>` gives its file (relative to the .xdce), its well
(`<Well><Row number/><Column number/>`, from 1) and `<Identifier field_index z_index wave_index
time_index/>` (all from 0, as Bio-Formats reads them). Sites count from 1 (field_index 0 is site 1);
`--plane` and `--timepoint` take the index's z_index and time_index. Channels are the
`<Wavelengths>/<Wavelength>` of the acquisition protocol (fusion waves left out), their id the
wave_index and their name `excitation - emission` as the file names show it (`DAPI - DAPI`,
`FITC - FITC`): `--channels Tubulin="FITC - FITC"` or `Tubulin=1`; by default a name containing
dapi/hoechst, tubulin, actin/phalloidin, else three channels in their order. Several planes or
time points are refused unless `--plane N`, `--project max` or `--timepoint N` picks them.

Give `classify` the plate folder. `--layout auto` knows it by a .xdce in it or, the folder listed
only up to its first TIFF, by an image named in the IN Cell way.
Not supported: raw `.im` images (that field fails), a folder holding the .xdce of several plates,
an index named `.xml`. An image listed but absent fails its field when read; a filename leading
out of the plate folder fails its field here; an index that is not XML or an image without its
filename, Row, Column or Identifier numbers is a PlateError naming the index.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError
from appliance.layouts.records import ImageRecord, assemble, stream_xml, well_at, whole_numbers

NAME = "incell"
LOOKS_FOR = "a .xdce index or images named like 'B - 2(fld 1 wv DAPI - DAPI).tif' (IN Cell Analyzer)"
INDEX_SUFFIX = ".xdce"
IMAGE_NAME = re.compile(r"^[A-Z]{1,2} - \d+\(fld \d+ ", re.IGNORECASE)  # 'B - 2(fld 1 wv DAPI - DAPI).tif'
IDENTIFIER = ("field_index", "z_index", "wave_index", "time_index")
TIFF = (".tif", ".tiff")


def is_plate(folder: Path) -> bool:
    """A .xdce in the folder, or its first TIFF named the IN Cell way (listing stops at the first TIFF)."""
    if not folder.is_dir():
        return False
    if (folder / f"{folder.name}{INDEX_SUFFIX}").is_file():
        return True
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name.lower()
            if name.endswith(INDEX_SUFFIX):
                return True
            if name.endswith(TIFF):
                return IMAGE_NAME.match(entry.name) is not None
    return False


def find_index(plate_dir: Path) -> Path:
    with os.scandir(plate_dir) as entries:
        found = sorted(Path(e.path) for e in entries if e.name.lower().endswith(INDEX_SUFFIX) and e.is_file())
    if not found:
        raise PlateError(f"{plate_dir}: no IN Cell index (*.xdce) in the folder")
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise PlateError(f"{plate_dir}: {len(found)} IN Cell indexes ({listed}); one plate per folder")
    return found[0]


def attribute(element: ET.Element, path: str, name: str) -> str:
    """The attribute of the element at path below element; "" if either is absent."""
    found = element.find(path)
    return "" if found is None else found.get(name, "").strip()


def filter_name(element: ET.Element) -> str:
    """'DAPI - DAPI' from an element's Excitation- and EmissionFilter names, as the file names show them."""
    names = (attribute(element, f"{{*}}{kind}Filter", "name") for kind in ("Excitation", "Emission"))
    return " - ".join(name for name in names if name)


def image_record(index: Path, element: ET.Element, number: int) -> ImageRecord:
    """One `<Images>/<Image>` of the index."""
    filename = (element.get("filename") or "").strip()
    where = f"{index}: image {number}" + (f" ({filename})" if filename else "")
    if not filename:
        raise PlateError(f"{where}: no filename")
    values = {key: attribute(element, "{*}Identifier", key) for key in IDENTIFIER}
    for part in ("Row", "Column"):
        values[f"{part} number"] = attribute(element, f"{{*}}Well/{{*}}{part}", "number")
    numbers = whole_numbers(values, ("Row number", "Column number", *IDENTIFIER), where)
    try:
        well = well_at(numbers["Row number"], numbers["Column number"])
    except ValueError as exc:
        raise PlateError(f"{where}: {exc}") from None
    return ImageRecord(
        well,
        numbers["field_index"] + 1,
        str(numbers["wave_index"]),
        index.parent / filename.replace("\\", "/"),
        plane=numbers["z_index"],
        timepoint=numbers["time_index"],
    )


def read_index(index: Path) -> tuple[list[ImageRecord], dict[str, str]]:
    """Every image of the index, and each wave_index's name (the protocol's Wavelengths, else the images' filters)."""
    records, names, from_images = [], {}, {}
    for tags, element in stream_xml(index, "ImageStack", 2, "an IN Cell index"):
        if tags[1:] == ("Images", "Image"):
            record = image_record(index, element, len(records) + 1)
            records.append(record)
            from_images.setdefault(record.channel, filter_name(element))
        elif tags[1:] == ("AutoLeadAcquisitionProtocol", "Wavelengths"):
            waves = [w for w in element.iterfind("{*}Wavelength") if w.get("fusion_wave", "false").lower() != "true"]
            for position, wave in enumerate(waves):
                given = wave.get("index", "").strip()
                names[str(int(given)) if given.isdigit() else str(position)] = filter_name(wave)
    channels = sorted({r.channel for r in records} | set(names), key=int)
    return records, {c: names.get(c) or from_images.get(c, "") for c in channels}


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    index = find_index(plate_dir)
    records, names = read_index(index)
    if not records:
        raise PlateError(f"{index}: the IN Cell index lists no images")
    fields, failures = assemble(records, names, options, NAME, plate_dir.resolve())
    tiffs = []
    for field in fields:
        if all(p.suffix.lower() in TIFF for p in field.paths):
            tiffs.append(field)
        else:
            files = "; ".join(p.name for p in field.paths)
            failures.append(Failure(field.plate, field.well, field.site, files, "raw .im images are not supported"))
    return tiffs, failures


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover)

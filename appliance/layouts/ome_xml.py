"""What an OME-XML document says about a plate (the OME-TIFF layout's metadata half): its Images, each
with its channel names, sizes, dimension order and the files its TiffData point into, and where
each Image sits on the Plate. Pure XML: no TIFF is opened here (appliance/layouts/ome_tiff.py does).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from appliance.layouts.records import local, well_at

ORDERS = ("XYZCT", "XYZTC", "XYCTZ", "XYCZT", "XYTCZ", "XYTZC")  # the schema's DimensionOrder values


class OmeProblem(ValueError):
    """What an OME-XML document or an image in it gets wrong; the message does not name the file."""


@dataclass(frozen=True)
class Image:
    """One OME Image as its document describes it."""

    id: str
    names: tuple[str, ...]  # of its channels, "" where unnamed
    sizes: tuple[int, int, int]  # SizeC, SizeZ, SizeT
    order: str  # DimensionOrder
    first_ifd: dict[Path, int]  # each file its TiffData point into, in their order: the first IFD named in it
    rgb: bool

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self.first_ifd)

    @property
    def label(self) -> str:
        """The image's files, for a Failure."""
        return "; ".join(f.name for f in self.files[:3])


def count(element: ET.Element, key: str, where: str, default: int | None = None) -> int:
    """A whole number attribute, 0 or more; OmeProblem naming `where` if it is missing (and has no default) or not."""
    text = element.get(key)
    if text is None and default is not None:
        return default
    try:
        value = int(text or "")
    except ValueError:
        raise OmeProblem(f"{where}: {key} {text!r} is not a whole number" if text else f"{where}: no {key}") from None
    if value < 0:
        raise OmeProblem(f"{where}: {key} {text!r} is negative")
    return value


def file_of(data: ET.Element, base: Path, own: Path | None) -> Path | None:
    """The file a TiffData points into: its UUID's FileName (relative to base), else the document's own file."""
    ref = data.find("{*}UUID")
    return base / ref.get("FileName") if ref is not None and ref.get("FileName") else own


def parse_images(document: ET.Element, source: Path, own: Path | None) -> list[Image]:
    """Every Image of an OME-XML document. `source` is the file holding it (FileNames are relative to
    its folder); `own` the OME-TIFF it is embedded in, whose pages a TiffData without UUID means
    (None for a companion, where every TiffData must name its file)."""
    if local(document.tag) != "OME":
        raise OmeProblem(f"not OME-XML (its root element is <{local(document.tag)}>, not <OME>)")
    own_uuid = document.get("UUID")
    images, ids = [], set()
    for number, element in enumerate(document.iterfind("{*}Image"), start=1):
        image_id = element.get("ID")
        if not image_id:
            raise OmeProblem(f"Image {number} has no ID")
        if image_id in ids:
            raise OmeProblem(f"two Images with ID {image_id!r}")
        ids.add(image_id)
        pixels = element.find("{*}Pixels")
        if pixels is None:
            raise OmeProblem(f"{image_id}: no Pixels")
        order = pixels.get("DimensionOrder", "")
        if order not in ORDERS:
            raise OmeProblem(f"{image_id}: DimensionOrder {order!r} is none of {', '.join(ORDERS)}")
        sizes = tuple(count(pixels, f"Size{axis}", image_id) for axis in "CZT")
        if 0 in sizes:
            raise OmeProblem(f"{image_id}: SizeC, SizeZ and SizeT must be 1 or more, not {sizes}")
        channels = pixels.findall("{*}Channel")
        names = [c.get("Name", "") for c in channels][: sizes[0]]
        first_ifd: dict[Path, int] = {}
        for data in pixels.iterfind("{*}TiffData"):
            for key in ("FirstC", "FirstZ", "FirstT", "PlaneCount"):
                count(data, key, f"{image_id}: TiffData", 0)
            path, ref = file_of(data, source.parent, own), data.find("{*}UUID")
            if ref is not None and not ref.get("FileName") and (ref.text or "").strip() != own_uuid:
                path = None  # another file, known by its UUID alone
            if path is None:
                what = "a UUID without FileName" if ref is not None else "no UUID FileName"
                raise OmeProblem(f"{image_id}: a TiffData with {what} (the file of each plane must be named)")
            first_ifd.setdefault(path, count(data, "IFD", f"{image_id}: TiffData", 0))
        images.append(
            Image(
                image_id,
                (*names, *[""] * (sizes[0] - len(names))),
                sizes,
                order,
                first_ifd,
                any(c.get("SamplesPerPixel", "1") != "1" for c in channels),
            )
        )
    return images


def plate_positions(document: ET.Element) -> dict[str, tuple[str, int]]:
    """Image ID -> (well, site) from the Plate: Well Row/Column from 0; the site is the WellSample's
    place in its Well ordered by Index (a running index over the plate, per the OME schema)."""
    plates = document.findall("{*}Plate")
    if len(plates) > 1:
        raise OmeProblem(f"describes {len(plates)} plates; one plate per folder is read")
    positions = {}
    for well in document.iterfind("{*}Plate/{*}Well"):
        where = f"Well {well.get('ID', '')}".rstrip()
        row, column = count(well, "Row", where), count(well, "Column", where)
        try:
            name = well_at(row + 1, column + 1)
        except ValueError:
            raise OmeProblem(f"{where}: no well at Row {row}, Column {column} (counted from 0)") from None
        samples = well.findall("{*}WellSample")
        indices = [count(s, "Index", f"{where}: WellSample {s.get('ID', '')}", n) for n, s in enumerate(samples)]
        for site, (_, sample) in enumerate(sorted(zip(indices, samples), key=lambda pair: pair[0]), start=1):
            ref = sample.find("{*}ImageRef")
            if ref is not None and ref.get("ID"):
                positions[ref.get("ID")] = (name, site)
    return positions

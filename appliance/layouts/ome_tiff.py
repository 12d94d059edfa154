"""OME-TIFF plates: each OME `<Image>` one field, in one file or many, described in the files or in a
`*.companion.ome`.

What the OME-TIFF specification allows and is read here: OME-XML in the first IFD of each
`*.ome.tif` (`.ome.tiff`, BigTIFF `.ome.tf2`/`.ome.tf8`/`.ome.btf`) describing one image or
many (a whole plate in one file, its images one after another); a multi-file dataset whose
`TiffData` point into other files (`<UUID FileName=...>`), each file carrying the whole XML
(read once) or only `<BinaryOnly MetadataFile=...>` naming the file that does: a master
OME-TIFF or an OME-XML companion (`*.companion.ome` in the plate folder, or the file a
BinaryOnly names). tifffile locates the planes (TiffFile.series: one series per OME Image, from
its TiffData's IFD, FirstC/FirstZ/FirstT, PlaneCount and UUID FileName; a companion's XML is
handed to it with `omexml=`), so each plane is a (file, page) and a Field's paths and planes
are those of its channels. File names are relative to the document naming them.

Well and site: from the OME Plate metadata (Well@Row/@Column, counted from 0; the site is the
place of the image's WellSample in its Well ordered by WellSample@Index, which the schema makes
unique over the plate: it is not the field's number), else, for an image alone in its file,
from the file name (`..._B02_s1.ome.tif`). Channels: `--channels DAPI=Hoechst 33342,...` names
them (case-insensitive) or gives their indices (`DAPI=0`); by default a channel name containing
dapi/hoechst is DAPI, tubulin is Tubulin and actin/phalloidin is Actin; three channels whose
names match none of these are read in their order. Images with other channel names are matched
apart: an image whose channels cannot be matched is a Failure; a channel map that fits no image
is a PlateError. Z-stacks and time series: `--plane N` / `--timepoint N`
as the OME-XML numbers them (TheZ, TheT from 0), or `--project max`.

A Failure (never dropped): a TIFF that cannot be read or holds no usable OME-XML, a BinaryOnly
TIFF no metadata file describes, an image without a well and site, RGB channels, planes on no TIFF
page, two images for one well and site, a file outside the plate folder; a file listed but not on
disk still makes its Field, which fails when read ("file not found"). A companion that is not
readable OME-XML or lacks what the schema requires is a PlateError naming it. Not supported: RGB
(SamplesPerPixel > 1) channels, pixels outside TIFF pages (BinData, MetadataOnly), a UUID without
FileName (no search by UUID), more than one Plate in a document, pyramid levels (never read),
PlateAcquisitions (the images of every acquisition are sites of their well). Only the XML and the
TIFFs' page lists are read here; pixels are read by appliance.imageio.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tifffile

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError, well_name
from appliance.layouts.ome_xml import Image, OmeProblem, file_of, parse_images, plate_positions
from appliance.layouts.records import ChannelError, ImageRecord, assemble, match_channels, read_xml

NAME = "ome-tiff"
LOOKS_FOR = "*.ome.tif files or a *.companion.ome (OME-TIFF)"
EXTENSIONS = (".ome.tif", ".ome.tiff", ".ome.tf2", ".ome.tf8", ".ome.btf")
COMPANION = ".companion.ome"
FILE_NAME = re.compile(r"(?:^|_)(?P<row>[A-Z]{1,2})(?P<column>\d{1,3})_s(?P<site>\d+)(?=[_.])", re.IGNORECASE)
Plane = tuple[int, int, int]  # (c, z, t) as the OME-XML numbers them, from 0


@dataclass(frozen=True)
class Placed:
    """An image at its well and site, with the (file, page) of each of its planes."""

    well: str
    site: int
    image: Image
    planes: dict[Plane, tuple[Path, int]]
    label: str


def is_ome_tiff(path: Path) -> bool:
    return path.name.lower().endswith(EXTENSIONS) and path.is_file()


def is_companion(path: Path) -> bool:
    return path.name.lower().endswith(COMPANION) and path.is_file()


def is_plate(folder: Path) -> bool:
    return any(is_ome_tiff(p) or is_companion(p) for p in folder.iterdir())


def position_in_name(path: Path) -> tuple[str, int] | None:
    """(well, site) from a file name like ..._B02_s1.ome.tif."""
    match = FILE_NAME.search(path.name.rsplit(".ome.", 1)[0] + ".")
    return (well_name(match["row"].upper(), int(match["column"])), int(match["site"])) if match else None


def file_failure(plate: str, path: Path, reason: str) -> Failure:
    well, site = position_in_name(path) or ("", 0)
    return Failure(plate, well, site, path.name, reason)


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """tifffile logs a warning for each plane it finds no page for; the Failures say it instead."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def series_pages(
    document: ET.Element, base: Path, own: Path | None, images: list[Image], usable: set[Path]
) -> dict[str, list[tuple[Path, int] | None]]:
    """Image ID -> the (file, page) of each of its planes in tifffile's series (None: no page), for the
    images tifffile makes a series of. Only the `usable` files are opened: TiffData pointing elsewhere
    are dropped from the XML handed to tifffile, their planes left without a page."""
    document = copy.deepcopy(document)
    for element in document.iterfind("{*}Image"):
        element.set("Name", element.get("ID", ""))  # tifffile names a series after its Image
        for pixels in element.iterfind("{*}Pixels"):
            for data in pixels.findall("{*}TiffData"):
                path, ref = file_of(data, base, own), data.find("{*}UUID")
                if path not in usable:
                    pixels.remove(data)
                elif path != own:
                    ref.set("FileName", str(path.resolve()))  # tifffile opens it as named, from any folder
    files = list(dict.fromkeys(f for image in images for f in image.files if f in usable))
    known = {os.path.realpath(p): p for p in files}
    text = ET.tostring(document, encoding="unicode")
    for candidate in [own] if own in usable else files:
        try:
            with quiet_tifffile(), tifffile.TiffFile(candidate, omexml=text, is_shaped=False, is_mmstack=False) as tif:
                return {
                    series.name: [
                        None if page is None else (known.get(page.parent.filehandle.path, candidate), int(page.index))
                        for page in series
                    ]
                    for series in tif.series
                    if series.kind == "ome"
                }
        except Exception:  # tifffile raises many types for damaged files: try the next file
            continue
    return {}


def planes_of(image: Image, pages: list[tuple[Path, int] | None] | None, usable: set[Path]) -> dict[Plane, tuple]:
    """The (file, page) of each (c, z, t) plane of an image, from its series' pages in order (the
    series' axes are DimensionOrder reversed). A plane without a page belongs to a file that is not
    usable (not on disk: the read says so; outside the plate: assemble refuses it); if every file
    is usable, the image is an OmeProblem saying which pages are not there."""
    if image.rgb:
        raise OmeProblem("has RGB (several samples per pixel) channels; grayscale channels are expected")
    if not image.files:
        raise OmeProblem(f"{image.id}: no TiffData (its pixels are in no TIFF page)")
    sizes = dict(zip("CZT", image.sizes))
    total = sizes["C"] * sizes["Z"] * sizes["T"]
    pages = [None] * total if pages is None else pages
    if len(pages) != total:
        raise OmeProblem(f"{image.id}: tifffile finds {len(pages)} planes, SizeC x SizeZ x SizeT is {total}")
    gone = [f for f in image.files if f not in usable]
    axes = image.order[:1:-1]  # "XYCZT" -> "TZC", slowest first
    planes, missing = {}, 0
    for flat, page in enumerate(pages):
        at = dict(zip(axes, np.unravel_index(flat, [sizes[a] for a in axes])))
        if page is None and gone:
            page = (gone[0], image.first_ifd[gone[0]])
        if page is None:
            missing += 1
            continue
        planes[int(at["C"]), int(at["Z"]), int(at["T"])] = page
    if missing:
        raise OmeProblem(no_page(image, pages, missing))
    return planes


def no_page(image: Image, pages: list, missing: int) -> str:
    """Why tifffile found no page for some planes of an image: an unreadable file, else which are missing."""
    read = {page[0] for page in pages if page is not None}
    for path in (f for f in image.files if f not in read):
        try:
            with tifffile.TiffFile(path):
                pass
        except Exception as exc:  # tifffile raises many types for damaged files
            return f"{path.name}: unreadable TIFF ({type(exc).__name__}: {exc})"
    return (
        f"{image.id}: {missing} of its {len(pages)} planes are on no page of {image.label} "
        "(a TiffData IFD beyond the last page, or pages unlike its Pixels: truncated or damaged?)"
    )


def read_dataset(
    document: ET.Element, source: Path, own: Path | None, plate_dir: Path
) -> tuple[list[Placed], list[Failure], set[Path]]:
    """The images of one OME-XML document placed on the plate, the Failures, and the files it describes
    (resolved). OmeProblem if the document itself cannot be used."""
    plate, root = plate_dir.name, plate_dir.resolve()
    images = parse_images(document, source, own)
    positions = plate_positions(document)
    files = {f for image in images for f in image.files}
    usable = {f for f in files if f.is_file() and f.resolve().is_relative_to(root)}
    pages = series_pages(document, source.parent, own, images, usable) if usable else {}
    in_file = Counter(f for image in images for f in set(image.files))
    placed, failures = [], []
    for image in images:
        position = positions.get(image.id)
        alone = len(image.files) == 1 and in_file[image.files[0]] == 1
        if position is None and alone:
            position = position_in_name(image.files[0])
        label = (image.label or source.name) + ("" if alone else f" ({image.id})")
        try:
            if position is None:
                raise OmeProblem("no well and site in the file name (..._B02_s1.ome.tif) or the OME Plate metadata")
            placed.append(Placed(*position, image, planes_of(image, pages.get(image.id), usable), label))
        except OmeProblem as exc:
            failures.append(Failure(plate, *(position or ("", 0)), label, str(exc)))
    return placed, failures, {f.resolve() for f in files}


def embedded_document(path: Path) -> ET.Element:
    """The OME-XML in the first IFD of an OME-TIFF; OmeProblem if the file or the XML cannot be read."""
    try:
        with tifffile.TiffFile(path) as tif:
            text = tif.ome_metadata
    except Exception as exc:  # tifffile raises many types for damaged files
        raise OmeProblem(f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    if not text:
        raise OmeProblem("no OME-XML metadata in the file")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise OmeProblem(f"unreadable OME-XML ({exc})") from exc


def binary_only_problem(path: Path, name: str, root: Path) -> str:
    """Why a BinaryOnly file's planes were found in no metadata file."""
    master = path.parent / name
    if not name:
        return "holds only BinaryOnly OME-XML, naming no MetadataFile"
    if not master.is_file():
        return f"its OME-XML is in {name} (BinaryOnly), which is not there"
    if not master.resolve().is_relative_to(root):
        return f"its OME-XML is in {name} (BinaryOnly), outside the plate folder {root}; refused"
    return f"its OME-XML is in {name} (BinaryOnly), which lists no plane in it"


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    plate, root = plate_dir.name, plate_dir.resolve()
    entries = sorted(plate_dir.iterdir())
    companions, tiffs = [p for p in entries if is_companion(p)], [p for p in entries if is_ome_tiff(p)]
    if not companions and not tiffs:
        raise PlateError(f"{plate_dir}: no OME-TIFF files (*.ome.tif) or *.companion.ome in the folder")
    placed, failures, covered, binary_only = [], [], set(), []

    def read(document: ET.Element, source: Path, own: Path | None) -> None:
        found, failed, files = read_dataset(document, source, own, plate_dir)
        placed.extend(found)
        failures.extend(failed)
        covered.update(files | {source.resolve()})

    def read_companion(path: Path) -> None:
        try:
            read(read_xml(path, "an OME-XML companion file"), path, None)
        except OmeProblem as exc:
            raise PlateError(f"{path}: {exc}") from None

    for path in companions:
        read_companion(path)
    for path in tiffs:
        if path.resolve() in covered:
            continue
        try:
            document = embedded_document(path)
            metadata = document.find("{*}BinaryOnly")
            if metadata is not None:
                binary_only.append((path, metadata.get("MetadataFile", "")))
                continue
            read(document, path, path)
        except OmeProblem as exc:
            failures.append(file_failure(plate, path, str(exc)))
    for path, name in binary_only:
        master = path.parent / name
        if name and path.resolve() not in covered and master.resolve() not in covered:
            if master.is_file() and master.resolve().is_relative_to(root) and not is_ome_tiff(master):
                read_companion(master)  # the companion of another name than *.companion.ome
        if path.resolve() not in covered:
            failures.append(file_failure(plate, path, binary_only_problem(path, name, root)))
    return fields_of(placed, failures, options, plate_dir)


def fields_of(
    placed: list[Placed], failures: list[Failure], options: LayoutOptions, plate_dir: Path
) -> tuple[list[Field], list[Failure]]:
    """Fields from the placed images: one image per well and site; the images whose channel names
    match alike are assembled together (records.assemble: time point, plane or projection)."""
    plate = plate_dir.name
    if not placed and not failures:
        raise PlateError(f"{plate_dir}: the OME-XML lists no images")
    by_position = defaultdict(list)
    for image in placed:
        by_position[image.well, image.site].append(image)
    by_names = defaultdict(list)
    for (well, site), images in by_position.items():
        if len(images) == 1:
            by_names[images[0].image.names].append(images[0])
            continue
        labels = list(dict.fromkeys(i.label for i in images))
        what = "file" if len({i.image.files for i in images}) > 1 else "image"
        failures.append(Failure(plate, well, site, "; ".join(labels), f"more than one {what} for this well and site"))
    fields, channel_failures = [], 0
    for names, images in by_names.items():
        channels = {str(c): name for c, name in enumerate(names)}
        try:
            ids = match_channels(channels, options.channels)
        except ChannelError as exc:
            channel_failures += len(images)
            failures.extend(Failure(plate, i.well, i.site, i.label, str(exc)) for i in images)
            continue
        wanted = {int(i) for i in ids.values()}
        records = [
            ImageRecord(i.well, i.site, str(c), path, plane=z, timepoint=t, frame=page)
            for i in images
            for (c, z, t), (path, page) in i.planes.items()
            if c in wanted
        ]
        found, failed = assemble(records, channels, replace(options, channels=ids), NAME, plate_dir)
        fields += found
        failures += failed
    # A channel map that fits no image is a wrong map, not a plate of failed fields.
    if channel_failures and channel_failures == len(failures) and not fields:
        raise PlateError(
            f"{plate_dir}: the channels of no file match the model's; {failures[0].file}: {failures[0].reason}"
        )
    return fields, failures


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover)

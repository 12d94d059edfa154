"""IN Cell Analyzer plates laid out as the IN Cell software writes them (IN Cell 2000/6000), for tests.

One folder holds `<plate>.xdce` and one single-page uint16 TIFF per plane of each channel, named
`{Row} - {column}(fld {field} wv {excitation} - {emission}).tif` (column not zero-padded, field
from 1: Bio-Formats' fallback naming, ome/bioformats@df36e69:components/formats-gpl/src/loci/
formats/in/InCellReader.java#L384-L412), with ` z {z}` (from 1) inside the parentheses for
z-stacks and ` - time {t} - {ms} ms` for time series (both as seen in user code, unattributed).
The .xdce follows the template of /tmp/formats.md section 3.3, reconstructed from that reader's
SAX handlers (MinimalInCellHandler, InCellHandler) under the header of a real IN Cell 2000 file:
ISO-8859-1 declaration, root <ImageStack>, an <AutoLeadAcquisitionProtocol> (Wavelengths with
fusion_wave and imaging_mode, Camera, PlateMap with Plate rows/columns, one offset_point per field,
TimeSchedule, ZDimensionParameters) before <Images>, and in each <Image filename thumbnail
acquisition_time_ms> the <Well label><Row number/><Column number/></Well> (from 1) before its
<Identifier field_index z_index wave_index time_index/> (from 0). Thumbnails are listed, not written.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images, as_stack

FILTERS = (("DAPI", "DAPI"), ("FITC", "FITC"), ("TexasRed", "TexasRed"))  # (excitation, emission) per channel
WAVELENGTHS = {"DAPI": (350, 455), "FITC": (490, 525), "TexasRed": (555, 617), "Cy5": (645, 705)}


def row_number(row: str) -> int:
    """'B' -> 2, 'AA' -> 27."""
    return sum(26**i * (ord(letter) - ord("A") + 1) for i, letter in enumerate(reversed(row)))


def image_name(well: str, site: int, excitation: str, emission: str, z: int | None, t: int | None) -> str:
    row, column = parse_well(well)
    suffix = (f" z {z + 1}" if z is not None else "") + (f" - time {t + 1} - {t * 60000} ms" if t is not None else "")
    return f"{row} - {column}(fld {site} wv {excitation} - {emission}{suffix}).tif"


def wavelength(index: int, excitation: str, emission: str, mode: str, fusion: bool = False) -> str:
    ex, em = WAVELENGTHS.get(excitation, (0, 0))[0], WAVELENGTHS.get(emission, (0, 0))[1]
    return (
        f'            <Wavelength index="{index}" fusion_wave="{str(fusion).lower()}" imaging_mode="{mode}">\n'
        f'                <ExcitationFilter name={quoteattr(excitation)} wavelength="{ex}"/>'
        f'<EmissionFilter name={quoteattr(emission)} wavelength="{em}"/>\n'
        "            </Wavelength>\n"
    )


def write_plate(
    folder: Path,
    images: Images,
    *,
    filters=FILTERS,
    extra=(),
    fusion: bool = False,
    wavelengths: bool = True,
    index_name: str | None = None,
) -> Path:
    """Write the fields as an IN Cell plate; returns the plate folder.

    images: (well, site) -> DAPI, Tubulin, Actin arrays of (height, width), (planes, height, width) or
    (time points, planes, height, width). filters: the (excitation, emission) filter names of those
    three channels; extra: (excitation, emission) of more channels, written as zeros after them;
    fusion: also list a fusion wave (fusion_wave="true", which has no images); wavelengths=False
    leaves the protocol's <Wavelengths> out (the channels then only named by each image's filters);
    index_name: the .xdce's name (default: the folder's name).
    """
    folder.mkdir(parents=True, exist_ok=True)
    channels = list(filters) + list(extra)
    times, planes, height, width = as_stack(next(iter(images.values()))[0]).shape
    mode = "3-D" if planes > 1 else "2-D"
    sites = sorted({site for _, site in images})
    image_elements = []
    for (well, site), arrays in sorted(images.items()):
        row, column = parse_well(well)
        stacks = [as_stack(a) for a in arrays] + [np.zeros((times, planes, height, width), np.uint16)] * len(extra)
        for t in range(times):
            for z in range(planes):
                for wave, ((excitation, emission), stack) in enumerate(zip(channels, stacks)):
                    name = image_name(
                        well, site, excitation, emission, z if planes > 1 else None, t if times > 1 else None
                    )
                    tifffile.imwrite(folder / name, stack[t, z])
                    image_elements.append(
                        f"        <Image filename={quoteattr(name)} "
                        f'thumbnail={quoteattr(name[:-4] + "_thumb.tif")} acquisition_time_ms="{t * 60000}">\n'
                        f'            <Well label="{row} - {column}"><Row number="{row_number(row)}"/>'
                        f'<Column number="{column}"/></Well>\n'
                        f'            <Exposure time="100" unit="ms"/>\n'
                        f'            <FocusPosition z="{z * 2.0}"/>\n'
                        f"            <EmissionFilter name={quoteattr(emission)}/>"
                        f"<ExcitationFilter name={quoteattr(excitation)}/>\n"
                        f'            <Identifier field_index="{site - 1}" time_index="{t}" wave_index="{wave}" '
                        f'z_index="{z}"/>\n'
                        "        </Image>\n"
                    )
    waves = "".join(wavelength(i, ex, em, mode) for i, (ex, em) in enumerate(channels))
    if fusion:
        waves += wavelength(len(channels), "DAPI", "DAPI", mode, fusion=True)
    offsets = "".join(
        f'<offset_point index="{i}" x="{(i - len(sites) / 2) * 200.0}" y="0.0"/>' for i in range(max(sites))
    )
    time_points = "".join(f'<TimePoint index="{t}" time="{t * 60000}"/>' for t in range(times))
    xdce = (
        '<?xml version="1.0" encoding="ISO-8859-1" standalone="no"?>\n'
        "<ImageStack>\n"
        '    <UUID value="7697b7dd-0fa1-426a-8aa7-3e0b9d5c198a"/>\n'
        '    <Application name="IN Cell Analyzer 2000" software_version="3.0.0.5"/>\n'
        '    <Creation date="2010-11-17" time="20:23:53"/>\n'
        '    <AutoLeadAcquisitionProtocol name="synthetic" version="99.9">\n'
        '        <Microscopy type="Fluorescence"/>\n'
        '        <ObjectiveCalibration magnification="20.0" numerical_aperture="0.45" objective_name="Nikon 20X/0.45" '
        'pixel_height="0.3250" pixel_width="0.3250" refractive_index="1.0" unit="µm"/>\n'
        f'        <Camera name="synthetic"><Size width="{width}" height="{height}"/><Binning value="1 X 1"/></Camera>\n'
        + (
            f'        <Wavelengths number="{len(channels) + fusion}">\n{waves}        </Wavelengths>\n'
            if wavelengths
            else ""
        )
        + "        <PlateMap>\n"
        '            <Plate rows="8" columns="12"><NamingRows begin="A"/><NamingColumns begin="1"/></Plate>\n'
        f'            <Fields number="{max(sites)}">{offsets}</Fields>\n'
        f'            <TimeSchedule enabled="{str(times > 1).lower()}"><Times>{time_points}</Times></TimeSchedule>\n'
        f'            <ZDimensionParameters number_of_slices="{planes}"/>\n'
        "        </PlateMap>\n"
        "    </AutoLeadAcquisitionProtocol>\n"
        f'    <Images number="{len(image_elements)}">\n' + "".join(image_elements) + "    </Images>\n"
        "</ImageStack>\n"
    )
    (folder / f"{index_name or folder.name}.xdce").write_bytes(xdce.encode("iso-8859-1"))
    return folder

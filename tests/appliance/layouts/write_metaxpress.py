"""MetaXpress plates as MetaXpress exports them (ImageXpress Micro), with their .HTD, for tests.

Layout B of fmi-faim/faim-ipa@58f3f07:src/faim_ipa/hcs/imagexpress/acquisition.py#L224-L269 (real
exports in that repository: resources/ImageXpress_exported/9987_Plate_3434/...):
`{name}_Plate_{id}/{name}.HTD`, a copy of it in `TimePoint_1/`, and `TimePoint_1/{name}_{well}_s{site}_w{n}.TIF`
(one single-page uint16 TIFF per wavelength; no `_s{site}` when the HTD says `"Sites", FALSE`).
The .HTD copies the real 9987_Plate_3434/9987.HTD (faim-ipa resources; syntax as Bio-Formats'
CellWorxReader parses it, ome/bioformats@df36e69:components/formats-gpl/src/loci/formats/in/
CellWorxReader.java#L583-L662): `"Key", value` lines, CRLF, a Description holding U+0081
separators (bytes C2 81), WellsSelection rows of TRUE/FALSE, SiteSelection, NWavelengths,
WaveName{n}, WaveCollect{n}, UniquePlateIdentifier and "EndFile".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images

NAMES = ("DAPI", "FITC", "Texas Red")  # MetaXpress names a wavelength by its filter set


def htd(wells: set[str], sites: int, names: list[str], rows: int = 8, columns: int = 12) -> str:
    flag = {True: "TRUE", False: "FALSE"}
    lines = [
        '"HTSInfoFile", Version 1.0',
        '"Description", "1t-3w-2s synthetic\x81DAPI: nuclei\x81FITC: tubulin"',
        '"PlateType", 2',
        '"TimePoints", 1',
        '"ZSeries", FALSE',
        '"ZSteps", 0',
        '"ZProjection", FALSE',
        f'"XWells", {columns}',
        f'"YWells", {rows}',
        *(
            f'"WellsSelection{r}", ' + ", ".join(flag[f"{chr(64 + r)}{c:02d}" in wells] for c in range(1, columns + 1))
            for r in range(1, rows + 1)
        ),
        f'"Sites", {flag[sites > 1]}',
        *(
            [f'"XSites", {sites}', '"YSites", 1', '"SiteSelection1", ' + ", ".join(["TRUE"] * sites)]
            if sites > 1
            else []
        ),
        '"Waves", TRUE',
        f'"NWavelengths", {len(names)}',
        *(f'"WaveName{n}", "{name}"' for n, name in enumerate(names, start=1)),
        *(f'"WaveCollect{n}", 1' for n in range(1, len(names) + 1)),
        '"UniquePlateIdentifier", "6f0ba473-d18a-4a31-8db8-e2087bc78145"',
        '"EndFile"',
    ]
    return "".join(line + "\r\n" for line in lines)


def write_plate(folder: Path, images: Images, *, name: str = "9987", names=NAMES, extra=(), order=(1, 2, 3)) -> Path:
    """Write the fields as a MetaXpress export; returns the plate folder.

    images: (well, site) -> DAPI, Tubulin, Actin (height, width) arrays. names: the wavelength names
    of those three; extra: names of more wavelengths, written as zeros; order: the wavelength number
    of DAPI, Tubulin and Actin (the extra ones take the other numbers, in order).
    """
    waves = len(names) + len(extra)
    others = [n for n in range(1, waves + 1) if n not in order]
    number_of = dict(zip(range(waves), list(order) + others))  # array index -> wavelength number
    wave_names = [""] * waves
    for index, label in enumerate(list(names) + list(extra)):
        wave_names[number_of[index] - 1] = label
    sites = max(site for _, site in images)
    timepoint = folder / "TimePoint_1"
    timepoint.mkdir(parents=True, exist_ok=True)
    for (well, site), arrays in images.items():
        well = "{}{:02d}".format(*parse_well(well))
        site_part = f"_s{site}" if sites > 1 else ""
        zeros = [np.zeros_like(arrays[0])] * len(extra)
        for index, array in enumerate(list(arrays) + zeros):
            tifffile.imwrite(timepoint / f"{name}_{well}{site_part}_w{number_of[index]}.TIF", array)
    text = htd({"{}{:02d}".format(*parse_well(w)) for w, _ in images}, sites, wave_names).encode("utf-8")
    for place in (folder, timepoint):
        (place / f"{name}.HTD").write_bytes(text)
    return folder

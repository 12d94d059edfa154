"""MetaXpress HCS.ai plates (ImageXpress HCS.ai / HT.ai, MetaXpress Acquire 2025 on): a .jdce index and image CSVs.

An acquisition is a folder `{protocol}_{date-time}/` holding `{protocol}.mxprotocol` and a folder
per kind of image: `experiment/` (the images, or the instrument's projections when a z-stack was
taken), `experiment_z_stack/` (every plane of the z-stack) and `experiment_montage/` (stitched
wells). Each holds `{acquisition}.jdce` (JSON despite the name: the channels are its
`ImageStack.AutoLeadAcquisitionProtocol.Wavelengths`, named by their `EmissionFilter.Name`), the
`image_metadata_*.csv` its `ImageMetadataFiles` lists, and the images,
`timepoint{t}/{protocol}_t{t}_{well}_s{s}_w{w}_z{z}.tif`. File names are never parsed: each CSV
row gives its file (`ImageSubFolderPath`/`ImageFileName`, relative to that folder), well (`Row`,
`Column`, from 1), site (`Field`, from 0: site 1 is Field 0), channel (`Wavelength`, from 0),
plane (`ZIndex`) and time point (`Timepoint`); `--plane`, `--timepoint` and channel ids take
these numbers (from 0), as the file names show them.

Give `classify` the acquisition folder: the planes of `experiment_z_stack/` are read when there is
one (choose `--plane N` or `--project max`), else `experiment/`. Give the `experiment/` folder
itself to classify the instrument's projections (the plate keeps the acquisition folder's name).
Channels: `--channels Tubulin=FITC` (a name) or `Tubulin=1` (a Wavelength); by default a name
containing dapi/hoechst, tubulin, actin/phalloidin, else three channels in their order.
Not supported: montages (`experiment_montage/`). An image listed but absent fails its field when
read; a path leading out of the plate folder fails its field here; a .jdce that is not JSON or has
no Wavelengths, or a CSV without those columns or with a non-number in one, is a PlateError
naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError
from appliance.layouts.records import ImageRecord, assemble, well_at, whole_numbers
from appliance.tables import MetadataError, read_table

NAME = "metaxpress-ai"
LOOKS_FOR = "a .jdce index in the folder or its experiment folder (MetaXpress HCS.ai)"
EXPERIMENTS = ("experiment_z_stack", "experiment")  # what an acquisition folder is read from, in this order
NUMBERS = ("Row", "Column", "Field", "Wavelength", "Timepoint", "ZIndex")
PATH_COLUMNS = ("ImageSubFolderPath", "ImageFileName")


def jdce_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.name.lower().endswith(".jdce") and e.is_file())


def find_experiment(folder: Path) -> tuple[Path, Path] | None:
    """(the experiment folder to read, the plate folder) for an acquisition folder or one of its experiment folders."""
    if folder.name.lower().startswith("experiment") and jdce_files(folder):
        return folder, folder.parent
    for name in EXPERIMENTS:
        if jdce_files(folder / name):
            return folder / name, folder
    return None


def plate_folder(folder: Path) -> Path:
    """The acquisition folder of one given as itself or as one of its experiment folders."""
    return folder.parent if folder.name.lower().startswith("experiment") and jdce_files(folder) else folder


def is_plate(folder: Path) -> bool:
    return find_experiment(folder) is not None


def read_jdce(experiment: Path) -> tuple[Path, dict[str, str], list[str]]:
    """(the .jdce, Wavelength -> EmissionFilter name, the image CSVs it lists)."""
    found = jdce_files(experiment)
    if len(found) > 1:
        raise PlateError(f"{experiment}: {len(found)} .jdce files ({', '.join(p.name for p in found)}); one expected")
    jdce = found[0]
    try:
        document = json.loads(jdce.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise PlateError(f"{jdce}: cannot read the .jdce index ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PlateError(f"{jdce}: the .jdce index is not readable JSON ({exc})") from None
    stack = document.get("ImageStack") if isinstance(document, dict) else None
    protocol = stack.get("AutoLeadAcquisitionProtocol") if isinstance(stack, dict) else None
    waves = protocol.get("Wavelengths") if isinstance(protocol, dict) else None
    if not isinstance(waves, list):
        raise PlateError(f"{jdce}: no ImageStack.AutoLeadAcquisitionProtocol.Wavelengths list in the .jdce index")
    names = {}
    for position, wave in enumerate(waves):
        wave = wave if isinstance(wave, dict) else {}
        emission = wave.get("EmissionFilter") if isinstance(wave.get("EmissionFilter"), dict) else {}
        names[str(wave.get("Index", position))] = str(emission.get("Name") or "").strip()
    return jdce, names, [str(name) for name in stack.get("ImageMetadataFiles") or []]


def image_records(table: Path, experiment: Path) -> list[ImageRecord]:
    """One record per row of an image_metadata CSV."""
    try:
        rows = read_table(table, NUMBERS + PATH_COLUMNS)
    except MetadataError as exc:
        raise PlateError(str(exc)) from None
    records = []
    for line, row in enumerate(rows, start=2):
        where = f"{table}: line {line}"
        numbers = whole_numbers(row, NUMBERS, where)
        if not row["ImageFileName"]:
            raise PlateError(f"{where}: no ImageFileName")
        try:
            well = well_at(numbers["Row"], numbers["Column"])
        except ValueError as exc:
            raise PlateError(f"{where}: {exc}") from None
        path = experiment / row["ImageSubFolderPath"].replace("\\", "/") / row["ImageFileName"]
        records.append(
            ImageRecord(
                well,
                numbers["Field"] + 1,
                str(numbers["Wavelength"]),
                path,
                plane=numbers["ZIndex"],
                timepoint=numbers["Timepoint"],
            )
        )
    return records


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    found = find_experiment(plate_dir)
    if found is None:
        raise PlateError(f"{plate_dir}: no .jdce index in the folder or its {' or '.join(EXPERIMENTS)} folder")
    experiment, plate = found
    if experiment.name.lower() == "experiment_montage":
        raise PlateError(f"{experiment}: stitched montages are not supported; give the acquisition folder {plate}")
    jdce, names, listed = read_jdce(experiment)
    tables = [experiment / name for name in listed] or sorted(experiment.glob("image_metadata*.csv"))
    if not tables:
        raise PlateError(f"{jdce}: lists no image CSV (ImageMetadataFiles), and no image_metadata*.csv is beside it")
    records = [record for table in tables for record in image_records(table, experiment)]
    if not records:
        raise PlateError(f"{jdce}: its image CSVs list no images")
    names |= {r.channel: "" for r in records if r.channel not in names}
    return assemble(records, names, options, NAME, plate.resolve())


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover, plate_folder)

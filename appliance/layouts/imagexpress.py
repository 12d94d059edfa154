"""BBBC021 and MetaXpress/ImageXpress plates: one grayscale TIFF per channel, the wavelength in its name.

bbbc021: `[prefix_]{well}_s{site}_w{n}{UUID}.tif` in the plate folder; w1 DAPI, w2 Tubulin, w4 Actin.
When BBBC021_v1_image.csv lies in the plate folder or one or two folders above it (the published
tree is ROOT/WeekN/WeekN_PLATE/), compound and concentration come from it, matched by DAPI file name.
metaxpress: `{name}_{well}[_s{site}]_w{n}[{UUID}].tif` in the plate folder or its TimePoint_1
folder, as MetaXpress writes them; no site in the name means site 1. Give the plate folder, or one
`TimePoint_N` folder (the plate is then named after its parent). A MetaXpress export's `{name}.HTD`
(in the plate folder, else in TimePoint_1) names the wavelengths (`"WaveName1", "DAPI"`): channels
are then found by name (dapi/hoechst, tubulin, actin/phalloidin) and `--channels` takes a name as
well as a number (`DAPI=DAPI,Tubulin=FITC,Actin=w3`); a channel no name points to is w1 DAPI,
w2 Tubulin, w3 Actin, the default without an HTD. An .HTD that is not one is a PlateError.
Not supported: more than one time point or z-step (TimePoint_2, ZStep_1, ...: give one
TimePoint_N folder of single-plane images), single-wavelength plates (`"Waves", FALSE`: no `_w` in
the names). `_thumb` thumbnails and other wavelengths are ignored.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from appliance.layouts.base import CHANNELS, Failure, Field, Layout, LayoutOptions, PlateError, file_problem, well_name
from appliance.layouts.bbbc021 import IMAGE_CSV, MOA_CSV, concentration_key, read_moa_table
from appliance.layouts.records import ChannelError, match_channels
from appliance.tables import MetadataError, read_table

FILE_NAME = re.compile(
    r"(?:^|_)(?P<row>[A-Z]{1,2})(?P<column>\d{1,3})(?:_s(?P<site>\d+))?_w(?P<wavelength>\d{1,2})"
    r"(?:[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12})?\.tiff?$",
    re.IGNORECASE,
)
DEFAULT_WAVELENGTHS = {
    "bbbc021": {"DAPI": 1, "Tubulin": 2, "Actin": 4},
    "metaxpress": {"DAPI": 1, "Tubulin": 2, "Actin": 3},
}
EXAMPLE = {"bbbc021": "G10_s1_w1<UUID>.tif", "metaxpress": "NAME_G10_s1_w1.tif (or in TimePoint_1/)"}
LOOKS_FOR = {
    "metaxpress": "a TimePoint_1 folder, or the folder is one (MetaXpress)",
    "bbbc021": "TIFF files in the folder (BBBC021 names)",
}
STACK_FOLDER = re.compile(r"^(TimePoint|ZStep)_\d+$", re.IGNORECASE)


def plate_folder(folder: Path) -> Path:
    """The plate folder of a plate given as itself or as one of its TimePoint_N / ZStep_N folders."""
    while STACK_FOLDER.match(folder.name) and folder.parent != folder:
        folder = folder.parent
    return folder


def find_htd(plate_dir: Path) -> Path | None:
    """The plate's MetaXpress .HTD: in the plate folder, else in its TimePoint_1 folder; None if it has none."""
    root = plate_folder(plate_dir)
    for folder in dict.fromkeys((root, root / "TimePoint_1", plate_dir)):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            found = sorted(Path(e.path) for e in entries if e.name.lower().endswith(".htd") and e.is_file())
        if len(found) > 1:
            raise PlateError(
                f"{folder}: {len(found)} .HTD files ({', '.join(p.name for p in found)}); one plate per folder"
            )
        if found:
            return found[0]
    return None


def read_htd(path: Path) -> dict[str, list[str]]:
    """The lines of an .HTD file as key -> values (`"WaveName1", "DAPI"` -> {"WaveName1": ["DAPI"]})."""
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")  # descriptions hold stray bytes
    except OSError as exc:
        raise PlateError(f"{path}: cannot read the MetaXpress .HTD file ({exc.strerror or exc})") from None
    entries = {}
    for row in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True):
        if row and row[0].strip():
            entries[row[0].strip()] = [value.strip() for value in row[1:]]
    if "HTSInfoFile" not in entries:
        raise PlateError(f'{path}: not a MetaXpress .HTD file (no "HTSInfoFile" line)')
    return entries


def wave_names(path: Path) -> dict[int, str]:
    """Wavelength number -> its name (WaveName1..NWavelengths) from an .HTD file; {} if it names none."""
    htd = read_htd(path)
    if htd.get("Waves", ["TRUE"])[:1] == ["FALSE"]:
        return {}
    count = (htd.get("NWavelengths") or [""])[0]
    if count and not count.isdigit():
        raise PlateError(f"{path}: NWavelengths {count!r} is not a whole number")
    named = sorted(int(key[8:]) for key in htd if re.fullmatch(r"WaveName\d+", key))
    numbers = range(1, int(count) + 1) if count else named
    return {n: (htd.get(f"WaveName{n}") or [""])[0] for n in numbers}


def named_wavelengths(layout: str, mapping: dict[str, str], names: dict[int, str], htd: Path) -> dict[str, int]:
    """Model channel -> wavelength number for a plate whose .HTD names its wavelengths: --channels by
    number (w3, 3) or name, else by name (records.match_channels), else the layout's default."""
    given = {c: m[1] if (m := re.fullmatch(r"w(\d{1,2})", v, re.IGNORECASE)) else v for c, v in mapping.items()}
    defaults = {c: str(n) for c, n in DEFAULT_WAVELENGTHS[layout].items()}
    try:
        chosen = match_channels({str(n): name for n, name in names.items()}, given, defaults)
    except ChannelError as exc:
        raise PlateError(f"{htd}: {exc}") from None
    return {c: int(chosen[c]) for c in CHANNELS}


def wavelengths(layout: str, mapping: dict[str, str]) -> dict[str, int]:
    """Model channel -> wavelength number: the layout's default, overridden by --channels (w4 or 4)."""
    chosen = dict(DEFAULT_WAVELENGTHS[layout])
    for channel, value in mapping.items():
        match = re.fullmatch(r"w?(\d{1,2})", value, re.IGNORECASE)
        if not match:
            raise PlateError(
                f"--channels {channel}={value}: the {layout} layout names a channel by its "
                f"wavelength number, e.g. {channel}=w{chosen[channel]}"
            )
        chosen[channel] = int(match[1])
    if len(set(chosen.values())) < len(chosen):
        raise PlateError(
            "--channels: one wavelength for two channels (" + ", ".join(f"{c}=w{n}" for c, n in chosen.items()) + ")"
        )
    return chosen


def image_folders(plate_dir: Path, layout: str) -> list[Path]:
    """The plate folder, and for MetaXpress its TimePoint_1; more time points or z-steps are refused."""
    if layout == "bbbc021":
        return [plate_dir]
    folders = [plate_dir] + [plate_dir / "TimePoint_1"] * (plate_dir / "TimePoint_1").is_dir()
    stacks = sorted(
        str(p.relative_to(plate_dir))
        for folder in folders
        for p in folder.iterdir()
        if p.is_dir() and STACK_FOLDER.match(p.name) and p.name.lower() != "timepoint_1"
    )
    if stacks:
        raise PlateError(
            f"{plate_dir}: {', '.join(stacks)}: time series and z-stacks are not supported; "
            "give one time point's folder of single-plane images as the plate"
        )
    return folders


def treatments_from_image_csv(plate_dir: Path) -> dict[str, tuple[str, float, str | None]]:
    """DAPI file name -> (compound, concentration, MoA) from a BBBC021 image CSV near the plate, if any;
    the MoA where the MoA table beside it names the treatment (None otherwise)."""
    for folder in (plate_dir, plate_dir.parent, plate_dir.parent.parent):
        path = folder / IMAGE_CSV
        if path.is_file():
            break
    else:
        return {}
    try:
        rows = read_table(path, ("Image_FileName_DAPI", "Image_Metadata_Compound", "Image_Metadata_Concentration"))
        moa = read_moa_table(path.parent / MOA_CSV) if (path.parent / MOA_CSV).is_file() else {}
        treatments = {}
        for r in rows:
            compound, concentration = r["Image_Metadata_Compound"], float(r["Image_Metadata_Concentration"])
            label = moa.get((compound, concentration_key(concentration)))
            treatments[r["Image_FileName_DAPI"]] = (compound, concentration, label)
        return treatments
    except (MetadataError, ValueError) as exc:
        raise PlateError(f"{path}: {exc}") from None


def discover(plate_dir: Path, layout: str, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    htd = find_htd(plate_dir) if layout == "metaxpress" else None
    named = wave_names(htd) if htd else {}
    if named:
        waves = named_wavelengths(layout, options.channels, named, htd)
    else:
        waves = wavelengths(layout, options.channels)
    plate, root = plate_folder(plate_dir).name, plate_folder(plate_dir).resolve()
    found: dict[tuple[str, int, int], dict[int, list[Path]]] = {}
    problems: dict[tuple[str, int, int], list[str]] = {}  # named like a channel file, but not one to read
    for folder in image_folders(plate_dir, layout):
        for path in sorted(folder.iterdir()):
            match = FILE_NAME.search(path.name)  # leftmost: the well, not an _s1 read as a well
            if not match:
                continue
            key = (match["row"].upper(), int(match["column"]), int(match["site"] or 1))
            found.setdefault(key, {}).setdefault(int(match["wavelength"]), []).append(path)
            if int(match["wavelength"]) in waves.values() and (problem := file_problem(path, root)):
                problems.setdefault(key, []).append(f"{path.name}: {problem}")
    if not found:
        raise PlateError(
            f"{plate_dir}: no field images named like {EXAMPLE[layout]} ("
            + ", ".join(f"w{n} {c}" for c, n in waves.items())
            + ")"
        )
    # A channel map that fits no file at all is a wrong map (or layout), not thousands of failed fields.
    present = sorted({n for files in found.values() for n in files})
    absent = [f"{c} (w{n})" for c, n in waves.items() if n not in present]
    if absent:
        raise PlateError(
            f"{plate_dir}: no file of {', '.join(absent)} in the {layout} layout; the plate has "
            + ", ".join(f"w{n}" for n in present)
            + ": name the channels with --channels "
            "(e.g. DAPI=w1,Tubulin=w2,Actin=w3) or choose --layout"
        )

    treatments = treatments_from_image_csv(plate_dir) if layout == "bbbc021" else {}
    fields, failures = [], []
    for (row, column, site), files in found.items():
        well = well_name(row, column)
        missing = [c for c in CHANNELS if waves[c] not in files]
        repeated = [c for c in CHANNELS if len(files.get(waves[c], ())) > 1]
        present_files = "; ".join(p.name for ps in files.values() for p in ps)
        if key_problems := problems.get((row, column, site)):
            failures.append(Failure(plate, well, site, present_files, "; ".join(key_problems)))
        elif missing:
            reason = "missing channel " + ", ".join(f"{c} (w{waves[c]})" for c in missing)
            failures.append(Failure(plate, well, site, present_files, reason))
        elif repeated:
            names = "; ".join(str(p.relative_to(plate_dir)) for c in repeated for p in files[waves[c]])
            reason = "more than one file for channel " + ", ".join(f"{c} (w{waves[c]})" for c in repeated)
            failures.append(Failure(plate, well, site, names, reason))
        else:
            paths = tuple(files[waves[c]][0] for c in CHANNELS)
            compound, concentration, moa = treatments.get(paths[0].name, (None, None, None))
            fields.append(
                Field(plate, well, site, paths, compound=compound, concentration=concentration, moa=moa, layout=layout)
            )
    return fields, failures


def discover_metaxpress(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    return discover(plate_dir, "metaxpress", options)


def discover_bbbc021(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    return discover(plate_dir, "bbbc021", options)


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff") and path.is_file()


def is_metaxpress(folder: Path) -> bool:
    """A TimePoint_1 folder in the folder, or the folder is a TimePoint_N (or ZStep_N) folder."""
    return (folder / "TimePoint_1").is_dir() or (STACK_FOLDER.match(folder.name) is not None and folder.is_dir())


def is_bbbc021(folder: Path) -> bool:
    return any(is_tiff(p) for p in folder.iterdir())


METAXPRESS = Layout("metaxpress", LOOKS_FOR["metaxpress"], is_metaxpress, discover_metaxpress, plate_folder)
BBBC021 = Layout("bbbc021", LOOKS_FOR["bbbc021"], is_bbbc021, discover_bbbc021)

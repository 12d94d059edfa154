"""Writing a BBBC021-layout dataset of synthetic plates: files, names and the two CSVs.

- `out/WeekN/WeekN_PLATE/{well}_s{site}_w{1,2,4}{UUID}.tif`: one 16-bit grayscale, uncompressed
  TIFF per stain (w1 DAPI, w2 Tubulin, w4 Actin), 1024 high x 1280 wide by default;
- `out/BBBC021_v1_image.csv` with the published columns, order and quoting, and
  `out/BBBC021_v1_moa.csv`, a copy of the real MoA table (12 mechanisms + DMSO).

Each plate is one week, holds all 13 classes in wells of up to four sites, and each well is one
treatment of the real MoA table. Every field's random stream and UUIDs come from
(seed, plate, well, site), so output is byte-identical whatever the number of workers.

`compounds` splits the compounds as a not-same-compound (NSC) test needs: "train" plates leave
out one compound of every class that has two or more (`heldout_compounds`), "heldout" plates
hold only those (and DMSO); "all" (the default) uses every compound.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
import tifffile

from appliance.layouts.base import CHANNELS
from appliance.layouts.bbbc021 import IMAGE_COLUMNS, IMAGE_CSV, MOA_CSV, WAVELENGTHS
from appliance.synth.phenotypes import dose_strength
from appliance.synth.rendering import FULL_SIZE, render_field

ROWS = "ABCDEFGH"
# BBBC021 uses the 60 inner wells (B02..G11); the outer ring only if a plate needs more.
INNER_WELLS = [f"{r}{c:02d}" for r in ROWS[1:7] for c in range(2, 12)]
OUTER_WELLS = [f"{r}{c:02d}" for r in ROWS for c in range(1, 13) if f"{r}{c:02d}" not in INNER_WELLS]
SITES_PER_WELL = 4
COMPOUND_SETS = ("all", "train", "heldout")


def moa_table() -> bytes:
    """The embedded, published BBBC021 MoA table, byte for byte."""
    return resources.files("appliance").joinpath("data", MOA_CSV).read_bytes()


def treatments_by_class() -> dict[str, list[tuple[str, str]]]:
    """moa -> sorted [(compound, concentration as written)], from the embedded table."""
    text = moa_table().decode("utf-8-sig")
    out: dict[str, list[tuple[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        out.setdefault(row["moa"].strip(), []).append((row["compound"].strip(), row["concentration"].strip()))
    for moa in out:
        out[moa].sort(key=lambda t: (t[0].lower(), float(t[1])))
    return dict(sorted(out.items()))


def heldout_compounds(seed: int) -> dict[str, str]:
    """moa -> the compound a "heldout" plate shows and "train" plates never do, for every class
    with two or more compounds; chosen by the seed."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC0DE]))
    out = {}
    for moa, treatments in treatments_by_class().items():
        compounds = sorted({c for c, _ in treatments}, key=str.lower)
        pick = int(rng.integers(0, len(compounds)))  # drawn for every class: one class's choice fixes no other's
        if len(compounds) > 1:
            out[moa] = compounds[pick]
    return out


def plate_name(seed: int, plate: int) -> tuple[int, str]:
    """(week, 'WeekN_PPPPP') of plate index `plate`: week plate+1, a 5-digit number from the seed."""
    week = plate + 1
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(plate), 0x91A7E]))
    return week, f"Week{week}_{int(rng.integers(10000, 100000))}"


def _well_seed(seed: int, plate: int, well: str, site: int) -> list[int]:
    return [int(seed), int(plate), ord(well[0]) - ord("A"), int(well[1:]), int(site)]


def _uuids(seed: int, plate: int, well: str, site: int) -> list[str]:
    rng = np.random.default_rng(np.random.SeedSequence(_well_seed(seed, plate, well, site) + [0x01D]))
    raw = rng.bytes(16 * len(CHANNELS))
    return [str(uuid.UUID(bytes=raw[16 * i : 16 * i + 16], version=4)).upper() for i in range(len(CHANNELS))]


def _layout(seed: int, plate: int, fields_per_class: int, compound_set: str = "all") -> list[tuple]:
    """(well, site, moa, compound, concentration) for every field of a plate, in well order."""
    if compound_set not in COMPOUND_SETS:
        raise ValueError(f"compounds must be one of {', '.join(COMPOUND_SETS)}, not {compound_set!r}")
    held = heldout_compounds(seed)
    classes = treatments_by_class()
    wells_per_class = -(-fields_per_class // SITES_PER_WELL)
    wells = INNER_WELLS + OUTER_WELLS
    if wells_per_class * len(classes) > len(wells):
        raise ValueError(
            f"fields_per_class={fields_per_class} needs {wells_per_class * len(classes)} wells; "
            f"a 96-well plate has {len(wells)} (at most "
            f"{len(wells) // len(classes) * SITES_PER_WELL} fields per class)"
        )
    used = wells[: wells_per_class * len(classes)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(plate), 0x1A70]))
    used = [used[i] for i in rng.permutation(len(used))]
    fields = []
    for ci, (moa, treatments) in enumerate(classes.items()):
        compounds = sorted({c for c, _ in treatments}, key=str.lower)
        if moa in held and compound_set != "all":
            compounds = [c for c in compounds if (c == held[moa]) == (compound_set == "heldout")]
        for j in range(wells_per_class):
            well = used[ci * wells_per_class + j]
            compound = compounds[(plate * wells_per_class + j) % len(compounds)]
            concs = [conc for c, conc in treatments if c == compound]
            conc = concs[(plate + j // len(compounds)) % len(concs)]
            sites = min(SITES_PER_WELL, fields_per_class - j * SITES_PER_WELL)
            for site in range(1, sites + 1):
                fields.append((well, site, moa, compound, conc))
    fields.sort(key=lambda f: (f[0], f[1]))
    return fields


def _strength(compound: str, concentration: str) -> float:
    doses = [float(c) for treatments in treatments_by_class().values() for name, c in treatments if name == compound]
    return dose_strength(compound, float(concentration), doses)


def _write_field(job: tuple) -> list[str]:
    out, seed, plate, week, name, well, site, moa, compound, conc, size, cue = job
    rng = np.random.default_rng(np.random.SeedSequence(_well_seed(seed, plate, well, site)))
    image = render_field(moa, _strength(compound, conc), week, rng, size, compound=compound, cue=cue)
    folder = Path(out) / f"Week{week}" / name
    names = []
    for channel, ident, plane in zip(CHANNELS, _uuids(seed, plate, well, site), image):
        file_name = f"{well}_s{site}_w{WAVELENGTHS[channel]}{ident}.tif"
        tifffile.imwrite(folder / file_name, plane, photometric="minisblack", metadata=None)
        names.append(file_name)
    return names


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def clear_folder(out: Path, overwrite: bool) -> None:
    """Make `out` ready for a new dataset: refuse a non-empty folder (its old plates' files would stay
    beside a CSV listing only the new ones) unless overwrite, which removes the Week folders and CSVs
    a dataset consists of, and nothing else."""
    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out}: not empty; choose an empty or new folder, or --overwrite to replace its plates")
    for entry in out.iterdir():
        if entry.is_dir() and entry.name.startswith("Week"):
            shutil.rmtree(entry)
        elif entry.name in (IMAGE_CSV, MOA_CSV):
            entry.unlink()


def write_dataset(
    out: Path,
    plates: int = 3,
    fields_per_class: int = 8,
    size: tuple[int, int] = FULL_SIZE,
    seed: int = 0,
    workers: int = 1,
    first_plate: int = 0,
    compounds: str = "all",
    brightness_cue: bool = False,
) -> dict:
    """Write `plates` synthetic plates (plate indices first_plate.., week = index + 1) under `out`.

    `compounds`: all, train or heldout (see the module's note). `brightness_cue` gives each class
    its own stain brightness: only to check that a classifier sees brightness where it is a cue.
    Returns {"fields": n, "plates": [names], "classes": 13, "seconds": t}. Same arguments give
    byte-identical files whatever `workers` is.
    """
    start = time.perf_counter()
    if plates < 1 or fields_per_class < 1 or first_plate < 0:
        raise ValueError("plates and fields_per_class must be >= 1 and first_plate >= 0")
    out = Path(out)
    size = (int(size[0]), int(size[1]))
    jobs, meta, names = [], [], []
    plate_range = range(first_plate, first_plate + plates)
    layouts = {plate: _layout(seed, plate, fields_per_class, compounds) for plate in plate_range}
    for plate, layout in layouts.items():
        week, name = plate_name(seed, plate)
        names.append(name)
        (out / f"Week{week}" / name).mkdir(parents=True, exist_ok=True)
        for well, site, moa, compound, conc in layout:
            jobs.append((str(out), seed, plate, week, name, well, site, moa, compound, conc, size, brightness_cue))
            meta.append((plate, week, name, well, compound, conc))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            files = list(pool.map(_write_field, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    else:
        files = [_write_field(job) for job in jobs]

    lines = [
        ",".join(
            c if c in ("TableNumber", "ImageNumber", "Replicate", "Image_Metadata_Concentration") else _quoted(c)
            for c in IMAGE_COLUMNS
        )
    ]
    image_numbers: dict[int, int] = {}
    for (plate, week, name, well, compound, conc), triple in zip(meta, files):
        table = week % 10
        image_numbers[table] = image_numbers.get(table, 0) + 1
        path = _quoted(f"Week{week}/{name}")
        row = [str(table), str(image_numbers[table])]
        for file_name in triple:
            row += [_quoted(file_name), path]
        row += [_quoted(name), _quoted(well), str(1 + plate % 3), _quoted(compound), f"{float(conc):.6f}"]
        lines.append(",".join(row))
    (out / IMAGE_CSV).write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    (out / MOA_CSV).write_bytes(moa_table())
    return {
        "fields": len(jobs),
        "plates": names,
        "classes": len(treatments_by_class()),
        "seconds": time.perf_counter() - start,
    }


def write_heldout_split(
    data: Path, heldout: Path, plates: int, fields_per_class: int, heldout_fields_per_class: int, **drawn
) -> tuple[dict, dict]:
    """Training plates of the training compounds under `data`, and under `heldout` one plate of the week
    after them showing only the compounds they never do (not-same-compound, a new week); `drawn`: the
    other write_dataset arguments. Returns both write_dataset summaries."""
    trained = write_dataset(data, plates=plates, fields_per_class=fields_per_class, compounds="train", **drawn)
    held = write_dataset(
        heldout, plates=1, fields_per_class=heldout_fields_per_class, first_plate=plates, compounds="heldout", **drawn
    )
    return trained, held

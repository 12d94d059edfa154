"""Finding the fields of a plate folder laid out as BBBC021 ships it.

Files are named `[prefix_]{well}_s{site}_w{wavelength}{UUID}.tif` (e.g. G10_s1_w1BEDC2073-...-84466707A25D.tif)
with w1 = DAPI, w2 = Tubulin, w4 = Actin. A field with a channel missing or given twice is
reported as a Failure, never dropped: a plate report must account for every field it saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from appliance.metadata import CHANNELS, WAVELENGTHS

# Some BBBC021 weeks prefix the name (Week5_130707_E04_s2_w2<UUID>.tif); thumbnails read _w1_thumb<UUID>.
FILE_NAME = re.compile(r"^(?:.*_)?(?P<row>[A-Z]{1,2})(?P<column>\d{1,3})_s(?P<site>\d+)_w(?P<wavelength>\d)"
                       r"[0-9A-F-]*\.tiff?$", re.IGNORECASE)
CHANNEL_OF = {n: c for c, n in WAVELENGTHS.items()}


class PlateError(ValueError):
    """The plate folder cannot be used at all; the message names it."""


@dataclass(frozen=True)
class PlateField:
    plate: str
    well: str
    row: str
    column: int
    site: int
    paths: tuple[Path, ...]  # one per model channel, in the model's order
    planes: tuple[int, ...] | None = None  # plane of each channel in a multi-plane file; None = one plane per file
    compound: str | None = None  # when known
    concentration: float | None = None


@dataclass(frozen=True)
class Failure:
    """A field that was not classified, and why."""

    plate: str
    well: str
    site: int
    file: str
    reason: str


# Stand-in on the classify-output branch: the plate-input helper's module adds the other layouts,
# channel mapping and plate maps. Here only the BBBC021 layout is read.
LAYOUTS = ("auto", "bbbc021")


def discover_fields(plate_dir: Path, layout: str = "auto", channels: str | None = None,
                    platemap: Path | None = None) -> tuple[list[PlateField], list[Failure]]:
    """Complete fields and incomplete ones, both sorted by row, column, site."""
    plate_dir = Path(plate_dir)
    if layout not in LAYOUTS:
        raise PlateError(f"layout {layout!r}: this build reads {', '.join(LAYOUTS)}")
    if channels is not None or platemap is not None:
        raise PlateError("--channels and --platemap are not supported by this build's plate reader")
    if not plate_dir.is_dir():
        raise PlateError(f"{plate_dir}: not a folder")
    plate = plate_dir.name
    found: dict[tuple[str, int, int], dict[str, list[Path]]] = {}
    for path in sorted(plate_dir.iterdir()):
        match = FILE_NAME.match(path.name)
        channel = CHANNEL_OF.get(int(match["wavelength"])) if match else None
        if channel is None or "_thumb" in path.name.lower() or not path.is_file():
            continue
        key = (match["row"].upper(), int(match["column"]), int(match["site"]))
        found.setdefault(key, {}).setdefault(channel, []).append(path)
    if not found:
        raise PlateError(f"{plate_dir}: no field images named like G10_s1_w1<UUID>.tif "
                         "(w1 DAPI, w2 Tubulin, w4 Actin)")

    fields, failures = [], []
    for (row, column, site) in sorted(found, key=lambda k: (len(k[0]), *k)):
        channels = found[(row, column, site)]
        well = f"{row}{column:02d}"
        missing = [c for c in CHANNELS if c not in channels]
        repeated = [c for c in CHANNELS if len(channels.get(c, ())) > 1]
        if missing:
            present = "; ".join(p.name for ps in channels.values() for p in ps)
            reason = "missing channel " + ", ".join(f"{c} (w{WAVELENGTHS[c]})" for c in missing)
            failures.append(Failure(plate, well, site, present, reason))
        elif repeated:
            files = "; ".join(p.name for c in repeated for p in channels[c])
            reason = "more than one file for channel " + ", ".join(f"{c} (w{WAVELENGTHS[c]})" for c in repeated)
            failures.append(Failure(plate, well, site, files, reason))
        else:
            fields.append(PlateField(plate, well, row, column, site, tuple(channels[c][0] for c in CHANNELS)))
    return fields, failures

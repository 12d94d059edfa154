"""What every layout produces: Fields (one imaged field, its files in the model's channel order)
and Failures (a field that could not be assembled, with the reason), plus well names.

Training, export and the runtime all pass the same Field along: a plate's field knows its
files and treatment; a labelled one also its mechanism of action (moa).
"""

from __future__ import annotations

import errno
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.tables import file_kind

CHANNELS = ("DAPI", "Tubulin", "Actin")  # the model's channel order: a Field's paths follow it
PROJECTIONS = ("max",)
WELL = re.compile(r"^(?P<row>[A-Z]{1,2})0*(?P<column>\d{1,3})$", re.IGNORECASE)


class PlateError(ValueError):
    """The plate folder cannot be used at all; the message names it."""


@dataclass(frozen=True)
class Field:
    """One imaged field: a file (and plane) per model channel, and what was done to its well."""

    plate: str
    well: str  # "B02" (zero-padded column)
    site: int
    paths: tuple[Path, ...]  # one per model channel, in CHANNELS order (an OME-TIFF repeats its path)
    planes: tuple[int, ...] | None = None  # plane of each channel in a multi-plane file; None: one plane per file
    compound: str | None = None
    concentration: float | None = None
    moa: str | None = None  # the class label, where known
    week: str | None = None  # the imaging batch (BBBC021's Week folder)
    image_number: int = 0  # BBBC021's ImageNumber
    split: str = ""  # "train" or "val" for a run's split.csv rows
    # --project max: every plane of each channel as (file, page or None), read and max-projected
    stack: tuple[tuple[tuple[Path, int | None], ...], ...] | None = None
    layout: str = ""  # the layout that found it
    source: str = ""  # which plane / time point / projection, where the imager has several

    @property
    def row(self) -> str:
        return parse_well(self.well)[0]

    @property
    def column(self) -> int:
        return parse_well(self.well)[1]

    @property
    def name(self) -> str:
        return f"{self.plate}/{self.well}/s{self.site}"

    @property
    def treatment(self) -> str:
        return f"{self.compound}@{self.concentration:g}"


@dataclass(frozen=True)
class LayoutOptions:
    """How to read a plate: --channels, and for plates with several planes or time points, which."""

    channels: dict[str, str] = field(default_factory=dict)  # model channel -> the imager's channel id or name
    plane: int | None = None  # as the imager numbers its planes
    timepoint: int | None = None  # as the imager numbers its time points
    project: str | None = None  # "max": maximum-intensity projection over every plane

    def __post_init__(self):
        if self.project not in (None, *PROJECTIONS):
            raise PlateError(f"--project {self.project!r}: choose {', '.join(PROJECTIONS)}")
        if self.project and self.plane is not None:
            raise PlateError("--plane and --project exclude each other: one plane, or a projection of all")


@dataclass(frozen=True)
class Layout:
    """One plate layout: how `--layout auto` recognises it, and how it finds a plate's fields."""

    name: str
    looks_for: str  # what detect() looks for, for the message when no layout recognises a plate
    detect: Callable[[Path], bool]
    discover: Callable[[Path, LayoutOptions], tuple[list[Field], list[Failure]]]
    # The plate folder of a path given as the plate: itself, or the plate holding this imager sub-folder.
    root: Callable[[Path], Path] = Path


@dataclass(frozen=True)
class Failure:
    """A field that was not classified, and why."""

    plate: str
    well: str
    site: int
    file: str
    reason: str


def file_problem(path: Path, root: Path, missing_ok: bool = False, folder_ok: bool = False) -> str:
    """Why a file named like an image of the plate cannot be read as one ("" if it can): a link leaving
    the plate folder `root` (resolved) is refused as the manifest refuses it, and a folder, FIFO, dangling
    link or symlink loop is named as what it is. missing_ok: a plain missing file is left for the reader
    to report; folder_ok: the image is a folder (an OME-Zarr array). Says what the path is, never what the
    file holds."""
    try:
        resolved = Path(path).resolve()
    except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
        return "a symlink loop; refused"
    if not resolved.is_relative_to(root):
        return f"outside the plate folder {root}; refused"
    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop; refused"
        if exc.errno == errno.ENOENT and Path(path).is_symlink():
            return "a link to nothing (its target is missing)"
        if exc.errno == errno.ENOENT:
            return "" if missing_ok else "file not found"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return ""
    return f"{file_kind(mode)}, not an image file; refused"


def parse_well(text: str) -> tuple[str, int]:
    """'B2', 'b02' -> ('B', 2); ValueError for anything else."""
    match = WELL.match(text.strip())
    if not match:
        raise ValueError(f"bad well {text!r} (expected a row letter and a column number, e.g. B02)")
    return match["row"].upper(), int(match["column"])


def well_name(row: str, column: int) -> str:
    return f"{row}{column:02d}"


def field_order(item: Field | Failure) -> tuple:
    """Sort key of a Field or Failure: row (A..Z, then AA..), column, site."""
    match = WELL.match(item.well)
    row, column = (match["row"].upper(), int(match["column"])) if match else (item.well, 0)
    return len(row), row, column, item.site

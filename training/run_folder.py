"""Before `train` writes anything: the run folders are free (or explicitly resumed or overwritten), and
every field of the data has one size, the one the model will take.

A run folder is never silently mixed. Training into a folder that already holds files stops,
naming the next free folder (runs/first-2, as Ultralytics numbers its runs), unless
  --resume     continues the run there from its latest checkpoint (training/checkpoint.py), or
  --overwrite  deletes that run (weights, checkpoints, export/, evaluation/: everything in it) first.
--overwrite deletes only a folder that is a run (run.json, split.csv or checkpoints/ in it): a
mistyped --out pointing at other files is refused, not emptied.

The field size: every channel file's TIFF header is read (no pixels) before the first file is
written; without --size the data's one size is taken, with it the data must agree.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import tifffile

from appliance.layouts.base import Field

RUN_MARKERS = ("run.json", "split.csv", "checkpoints")  # what `train` writes first into a run


class RunFolderError(ValueError):
    """The run folder cannot be used as asked; the message names it and the options that would."""


class FieldSizeError(ValueError):
    """The data's fields do not share one size, or not the size asked for; the message names files."""


def holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def is_run(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in RUN_MARKERS)


def next_free(folder: Path) -> Path:
    """folder-2, folder-3, ...: the first that does not exist or is empty."""
    n = 2
    while holds_files(folder.with_name(f"{folder.name}-{n}")):
        n += 1
    return folder.with_name(f"{folder.name}-{n}")


def check_run_folders(folders: list[Path], resume: bool, overwrite: bool) -> list[Path]:
    """Refuse (RunFolderError) a folder holding files unless resume or overwrite allows it; returns
    the folders --overwrite will delete (nothing is deleted here, so a later check can still stop)."""
    if resume and overwrite:
        raise RunFolderError("--resume continues a run, --overwrite deletes it: give one of them")
    doomed = []
    for folder in folders:
        if not holds_files(folder) or resume:  # --resume: train finds the checkpoint, or says there is none
            continue
        if not overwrite:
            raise RunFolderError(
                f"{folder}: already holds {'a run' if is_run(folder) else 'files'}; "
                f"--resume continues it, --overwrite replaces it (its export/ and evaluation/ too), "
                f"or train into a new folder such as --out {next_free(folder)}"
            )
        if not is_run(folder):
            raise RunFolderError(
                f"{folder}: not a run folder (no {', '.join(RUN_MARKERS)} in it); --overwrite deletes only "
                f"runs: choose another --out"
            )
        doomed.append(folder)
    return doomed


def delete_runs(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder)


def tiff_shape(path: Path) -> tuple[int, int]:
    """(height, width) of a single-plane TIFF from its header (no pixels decoded)."""
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.pages.first.shape
    except FileNotFoundError:
        raise FieldSizeError(f"{path}: file not found (listed in the data's image table)") from None
    except Exception as exc:  # tifffile raises many types for damaged files
        raise FieldSizeError(f"{path}: unreadable TIFF ({type(exc).__name__}: {exc})") from None
    if len(shape) != 2:
        raise FieldSizeError(f"{path}: expected one grayscale plane, found an image of shape {shape}")
    return tuple(shape)


def data_field_size(fields: list[Field], size: tuple[int, int] | None, data: Path) -> tuple[int, int]:
    """The one (height, width) of every channel of every field; `size` (--size), when given, must be it."""
    files_by_size: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for f in fields:
        for path in f.paths:
            files_by_size[tiff_shape(Path(path))].append(Path(path))
    if len(files_by_size) > 1:
        described = "; ".join(
            f"{h}x{w}: {len(files)} file(s), e.g. {files[0]}" for (h, w), files in sorted(files_by_size.items())
        )
        raise FieldSizeError(f"{data}: the fields differ in size (HxW) - {described}; train on fields of one size")
    if not files_by_size:
        if size is None:
            raise FieldSizeError(f"{data}: no labelled field to take the field size from; give --size HxW")
        return tuple(size)
    [found] = files_by_size
    if size is not None and tuple(size) != found:
        raise FieldSizeError(
            f"{data}: the fields are {found[0]}x{found[1]} (HxW), --size asks for {size[0]}x{size[1]}; "
            f"leave --size out to train at the data's size"
        )
    return found

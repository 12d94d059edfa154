"""The one way this project writes a file: beside it, flushed to disk, then renamed over it.

A reader (or a crash, or a full disk) never sees half a file: either the old file stays whole or
the new one is there whole. The folder is synced too, so the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def umask() -> int:
    mask = os.umask(0o077)  # the only way to read it is to set it; put back at once
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~umask()  # what open() gives a new file; some writers (safetensors) make theirs 0600


class WriteError(OSError):
    """A file could not be written; the message names it, and the file there before is unchanged."""


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """write(temporary path), fsync it, rename it over `path`, fsync the folder; a failure leaves `path`
    as it was and no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        sync(tmp)
        os.replace(tmp, path)
        sync(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot write ({exc.strerror or exc}); the file there before is unchanged") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def sync(path: Path) -> None:
    """fsync a file or a folder (a folder's entry list holds the rename)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str))

"""The one way this project writes a file: beside it, flushed to disk, then renamed over it.

A reader (or a crash, or a full disk) never sees half a file: either the old file stays whole or
the new one is there whole. The folder is synced too, so the rename itself survives a power cut.
Also here: `set_aside` (a damaged file renamed `.damaged`, never deleted) and `lock_folder`, the
one lock classify and watch take on the folder they write.
"""

from __future__ import annotations

import fcntl
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


def set_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged` (numbered if one is there already), so that nothing reads it
    again and nothing is lost; returns the new path."""
    path = Path(path)
    target, n = path.with_name(f"{path.name}.damaged"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged{n}")
    os.replace(path, target)
    sync(path.parent)
    return target


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock; the message names the folder and who holds it."""


def lock_folder(folder: Path, name: str, holder: str):
    """Take the exclusive lock `folder/name` (flock, released when the returned file is closed or the process
    ends, even by kill -9); FolderBusy naming `holder` (e.g. "another classify run") if it is taken."""
    path = Path(folder) / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access: a read-only folder
    except OSError as exc:  # can still be locked once the file is there, and then fail where it is written
        raise WriteError(f"{folder}: cannot write ({exc.strerror or exc}); results already there are intact") from exc
    lock = os.fdopen(fd, "rb")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise FolderBusy(f"{folder}: {holder} is writing to this folder (it holds {path}); let it end first") from None
    return lock

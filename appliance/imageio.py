"""Reading a field: three 16-bit grayscale TIFFs stacked as (channel, height, width).

The network's input size is a contract: a file of another size, bit depth or channel
count is rejected with a message naming it, never cropped, resized or converted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


class FieldError(ValueError):
    """A field cannot be read as the model needs it; `path` is the offending file."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def read_channel(path: Path, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """One channel as a (height, width) uint16 array, checked against the model's size."""
    path = Path(path)
    if not path.is_file():
        raise FieldError(path, "file not found")
    try:
        image = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise FieldError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    if image.ndim != 2:
        raise FieldError(path, f"expected one grayscale plane, found an array of shape {image.shape}")
    if image.dtype != np.uint16:
        raise FieldError(path, f"expected 16-bit unsigned pixels, found {image.dtype}")
    if image.shape != tuple(size):
        h, w = image.shape
        raise FieldError(path, f"field is {w}x{h} (WxH), the model takes {size[1]}x{size[0]}")
    if out is None:
        return image
    out[...] = image
    return out


def read_field(paths: tuple[Path, ...] | list[Path], size: tuple[int, int],
               out: np.ndarray | None = None) -> np.ndarray:
    """The channels of one field stacked in the given order: (channels, height, width) uint16."""
    if out is None:
        out = np.empty((len(paths), *size), dtype=np.uint16)
    for channel, path in enumerate(paths):
        read_channel(path, size, out[channel])
    return out


def read_plate_field(field, size: tuple[int, int], out: np.ndarray | None = None, fit: str | None = None) -> str:
    """Fill out (channels, H, W) uint16 with a PlateField; returns the note of any fit applied ("" for none).

    Stand-in on the classify-output branch (one plane per file, no fit); the plate-input helper's
    version adds multi-plane files and --fit.
    """
    if fit is not None:
        raise ValueError(f"fit {fit!r}: this build reads fields only at the model's exact size")
    read_field(field.paths, size, out=out)
    return ""

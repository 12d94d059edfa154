"""What a plane may be, checked from what it declares before a pixel is decoded.

A channel's plane must be one 16-bit grayscale plane of the model's size; only on request (`fit`)
may it be smaller ("pad") or of another size ("resize"), and then of at most FIT_MAX_TIMES the
model's pixels. These checks take a shape and a pixel type, so appliance.imageio runs them on a
TIFF's header, a Zarr array's metadata or a decoded image alike: a small file declaring a huge
image is refused unread, and every buffer a file can make us allocate is bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FITS = ("pad", "resize")
FIT_MAX_TIMES = 16  # --fit reads planes of at most 16 times the model's pixels (4 times its width and height)
RESIZE_MAX_PIXELS = 2**26  # and never more than 8192x8192 (128 MiB of 16-bit pixels), whatever the model
TILE_MAX_PIXELS = 2**22  # the largest TIFF tile decoded beyond the plane's own size (4 Mpixels)


class FieldError(ValueError):
    """A field cannot be read as the model needs it; `path` is the offending file."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"  # height x width, as every option and message of the project gives sizes


def check_plane(
    path: Path, shape: tuple[int, ...], dtype, size: tuple[int, int] | None = None, fit: str | None = None
) -> None:
    """Refuse a plane by what it is or declares to be: one 16-bit grayscale plane of a size this fit takes."""
    if len(shape) != 2:
        raise FieldError(path, f"expected one grayscale plane, found an array of shape {tuple(shape)}")
    if np.dtype(dtype) != np.uint16:
        raise FieldError(path, f"expected 16-bit unsigned pixels, found {np.dtype(dtype)}")
    problem = size_problem(tuple(shape), size, fit)
    if problem:
        raise FieldError(path, problem)


def check_pixels(path: Path, image: np.ndarray) -> None:
    check_plane(path, image.shape, image.dtype)


def check_tiles(path: Path, page) -> None:
    """A tiled page decodes tile by tile, each into a buffer of the tile's declared size: bound it too."""
    tile = page.tilewidth * page.tilelength * max(page.tiledepth, 1) if page.is_tiled else 0
    if tile > max(2 * page.shape[0] * page.shape[1], TILE_MAX_PIXELS):
        raise FieldError(
            path, f"declares tiles of {page.tilewidth}x{page.tilelength} pixels, far larger than its plane"
        )


def size_problem(shape: tuple[int, ...], size: tuple[int, int] | None, fit: str | None) -> str:
    """Why a plane of this (height, width) cannot become the model's input with this fit; "" if it can."""
    if size is not None and fit is None and tuple(shape) != tuple(size):
        return (
            f"field is {size_text(shape)} (HxW), the model takes {size_text(size)} (--fit pad or --fit resize fits it)"
        )
    if size is not None and fit == "pad" and (shape[0] > size[0] or shape[1] > size[1]):
        return (
            f"field is {size_text(shape)} (HxW), larger than the model's "
            f"{size_text(size)}: padding cannot shrink it (--fit resize scales it)"
        )
    if size is not None and shape[0] * shape[1] > FIT_MAX_TIMES * size[0] * size[1]:
        return (
            f"field is {size_text(shape)} (HxW), more than {FIT_MAX_TIMES} times the model's "
            f"{size_text(size)} pixels that --fit reads"
        )
    if shape[0] * shape[1] > RESIZE_MAX_PIXELS:
        return f"plane is {size_text(shape)}, more than the {RESIZE_MAX_PIXELS} pixels read for one field"
    return ""

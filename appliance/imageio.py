"""Reading a field: its 16-bit grayscale channels stacked as (channel, height, width).

A channel is a whole TIFF (BBBC021, MetaXpress, manifest) or one plane of a multi-channel
OME-TIFF. Compressed TIFFs (LZW, deflate, zstd, ...) read like plain ones: tifffile decodes
them with imagecodecs. The network's input size is a contract: a plane of another size, bit
depth or channel count is rejected with a message naming the file. Only on request
(`fit`) is a smaller field zero-padded ("pad") or scaled ("resize"), and the caller gets a
note of what was done to record with the result; nothing is ever cropped or converted.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import tifffile

from appliance.layouts.base import Field

FITS = ("pad", "resize")


class FieldError(ValueError):
    """A field cannot be read as the model needs it; `path` is the offending file."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"  # width x height, as imagers and viewers print it


def check_pixels(path: Path, image: np.ndarray) -> None:
    if image.ndim != 2:
        raise FieldError(path, f"expected one grayscale plane, found an array of shape {image.shape}")
    if image.dtype != np.uint16:
        raise FieldError(path, f"expected 16-bit unsigned pixels, found {image.dtype}")


def read_tiff(path: Path) -> np.ndarray:
    """The image of a single-plane TIFF, or FieldError for a missing, corrupt or truncated file."""
    if not path.is_file():
        raise FieldError(path, "file not found")
    try:
        return tifffile.imread(path)
    except Exception as exc:  # tifffile and imagecodecs raise many types for damaged files
        raise FieldError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc


def read_tiff_into(path: Path, out: np.ndarray) -> bool:
    """Decode a single-plane uint16 TIFF of out's shape straight into out (no copy); False if the file
    is anything else, for the general path to read and explain; FieldError if it cannot be read."""
    if not path.is_file():
        raise FieldError(path, "file not found")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if len(tif.pages) != 1 or page.shape != out.shape or page.dtype != np.uint16:
                return False
            page.asarray(out=out)
    except Exception as exc:  # tifffile and imagecodecs raise many types for damaged files
        raise FieldError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    return True


def read_channel(path: Path, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """One channel as a (height, width) uint16 array, checked against the model's size."""
    path = Path(path)
    image = read_tiff(path)
    check_pixels(path, image)
    if image.shape != tuple(size):
        raise FieldError(path, f"field is {size_text(image.shape)} (WxH), the model takes {size_text(size)}")
    if out is None:
        return image
    out[...] = image
    return out


def read_field(
    paths: tuple[Path, ...] | list[Path], size: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """The channels of one field stacked in the given order: (channels, height, width) uint16."""
    if out is None:
        out = np.empty((len(paths), *size), dtype=np.uint16)
    for channel, path in enumerate(paths):
        read_channel(path, size, out[channel])
    return out


def read_planes(paths: tuple[Path, ...], planes: tuple[int, ...]) -> list[np.ndarray]:
    """Planes of multi-plane files, each file opened once."""
    images = []
    with ExitStack() as stack:
        opened = {}
        for path, plane in zip(paths, planes):
            try:
                if path not in opened:
                    if not path.is_file():
                        raise FieldError(path, "file not found")
                    opened[path] = stack.enter_context(tifffile.TiffFile(path))
                pages = opened[path].pages
                if plane >= len(pages):
                    raise FieldError(
                        path, f"has {len(pages)} planes, plane {plane} was asked for (truncated or damaged?)"
                    )
                images.append(pages[plane].asarray())
            except FieldError:
                raise
            except Exception as exc:  # tifffile and imagecodecs raise many types for damaged files
                raise FieldError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    return images


def max_projection(stack: tuple[tuple[Path, int | None], ...]) -> np.ndarray:
    """The brightest value of each pixel over the planes of one channel (--project max)."""
    projected = None
    for path, frame in stack:
        path = Path(path)
        image = read_planes((path,), (frame,))[0] if frame is not None else read_tiff(path)
        check_pixels(path, image)
        if projected is not None and image.shape != projected.shape:
            raise FieldError(path, f"plane is {size_text(image.shape)}, the others {size_text(projected.shape)}")
        projected = image if projected is None else np.maximum(projected, image)
    return projected


def fit_image(path: Path, image: np.ndarray, size: tuple[int, int], fit: str) -> tuple[np.ndarray, str]:
    """A plane brought to the model's size, and the note saying how.

    pad: zeros around the image, centred (the odd pixel goes bottom/right); only for images no
    larger than the model's input. resize: one scale factor for both axes (cells keep their
    shape) with Pillow's antialiased bilinear filter, then centred zero padding for the rest.
    """
    height, width = size
    note = ""
    if fit == "resize":
        from PIL import Image  # only this option needs Pillow

        scale = min(height / image.shape[0], width / image.shape[1])
        new = (min(height, round(image.shape[0] * scale)), min(width, round(image.shape[1] * scale)))
        scaled = Image.fromarray(image.astype(np.float32)).resize((new[1], new[0]), Image.Resampling.BILINEAR)
        note = f"resize {size_text(image.shape)} -> {size_text(new)}"
        image = np.asarray(scaled).round().clip(0, 65535).astype(np.uint16)
    if image.shape[0] > height or image.shape[1] > width:
        raise FieldError(
            path,
            f"field is {size_text(image.shape)} (WxH), larger than the model's "
            f"{size_text(size)}: padding cannot shrink it (--fit resize scales it)",
        )
    if image.shape != (height, width):
        top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
        padded = np.zeros((height, width), dtype=np.uint16)
        padded[top : top + image.shape[0], left : left + image.shape[1]] = image
        note += f"{', ' if note else ''}pad {size_text(image.shape)} -> {size_text(size)}"
        image = padded
    return image, note


def read_plate_field(field: Field, size: tuple[int, int], out: np.ndarray | None = None, fit: str | None = None) -> str:
    """Fill out (channels, height, width) uint16 with the field; return "" or the note of the fit applied.

    Raises FieldError for a missing, corrupt or truncated file, a plane that is not 16-bit
    grayscale, or a size other than the model's (unless fit is "pad" or "resize").
    With out=None the field is read and checked only.
    """
    if fit not in (None, *FITS):
        raise ValueError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    paths = tuple(Path(p) for p in field.paths)
    if out is None:
        out = np.empty((len(paths), *size), dtype=np.uint16)
    if field.stack is not None:
        images = [max_projection(stack) for stack in field.stack]
    elif field.planes is None and all(read_tiff_into(p, out[c]) for c, p in enumerate(paths)):
        return ""  # the common case: one plane per file at the model's size, decoded in place
    else:
        images = read_planes(paths, field.planes) if field.planes is not None else [read_tiff(p) for p in paths]
    notes = []
    for channel, (path, image) in enumerate(zip(paths, images)):
        check_pixels(path, image)
        if image.shape != tuple(size):
            if fit is None:
                raise FieldError(
                    path,
                    f"field is {size_text(image.shape)} (WxH), the model takes "
                    f"{size_text(size)} (--fit pad or --fit resize fits it)",
                )
            image, note = fit_image(path, image, size, fit)
            notes.append(note)
        out[channel] = image
    return "; ".join(dict.fromkeys(notes))

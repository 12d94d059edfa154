"""Reading a field: its 16-bit grayscale channels stacked as (channel, height, width).

A channel is a whole TIFF (BBBC021, MetaXpress, manifest), one plane of a multi-channel
OME-TIFF, or one plane of a Zarr array (OME-Zarr: a Field's path is the array's folder, its
plane a flat index over the array's leading, non-y/x, axes). Compressed TIFFs (LZW, deflate,
zstd, ...) read like plain ones: tifffile decodes them with imagecodecs. Zarr chunks (format 2
or 3, any codec of numcodecs) zarr-python decodes, once the array's declared shape, dtype and
chunk size are checked, so that its metadata cannot make us allocate more than a plane; a chunk
that is one whole plane compressed by zstd alone (ome-zarr-py's default) imagecodecs decodes
here, from its file straight into the field's buffer. The network's input size is a contract:
a plane of another size, bit depth or channel count is rejected with a message naming the
file, from what its header declares, before it is decoded (appliance.plane_checks). Only on
request (`fit`) is a smaller field zero-padded ("pad") or scaled ("resize"), and the caller gets
a note of what was done to record with the result; nothing is ever cropped or converted.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from itertools import islice
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from appliance.layouts import bioio_files
from appliance.layouts.base import Field
from appliance.plane_checks import FITS, FieldError, check_pixels, check_plane, check_tiles, size_problem, size_text

ZARR_MAX_CHUNK_BYTES = 2**28  # the largest stored Zarr chunk decoded to read a plane (256 MiB)


def read_tiff(path: Path, size: tuple[int, int] | None = None, fit: str | None = None) -> np.ndarray:
    """The image of a single-plane TIFF, or FieldError for a missing, corrupt or truncated file. What the
    header declares (shape, pixel type, tiles) is checked before anything is decoded: against the model's
    size and fit when size is given, so that a small file declaring a huge image is refused unread."""
    if not path.is_file():
        raise FieldError(path, "file not found")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            check_plane(path, series.shape, series.dtype, size, fit)
            check_tiles(path, series.keyframe)
            return series.asarray()
    except FieldError:
        raise
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
            check_tiles(path, page)
            page.asarray(out=out)
    except FieldError:
        raise
    except Exception as exc:  # tifffile and imagecodecs raise many types for damaged files
        raise FieldError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    return True


def read_channel(path: Path, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """One channel as a (height, width) uint16 array, checked against the model's size."""
    path = Path(path)
    image = read_tiff(path, size)  # of the model's size, or refused before decoding
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


def open_zarr(path: Path):
    """The Zarr array (format 2 or 3) at path, checked from its metadata alone: y/x planes of 16-bit
    unsigned pixels in chunks of a bounded size."""
    import zarr  # only OME-Zarr plates need it; TIFF plates start faster without

    try:
        array = zarr.open_array(path, mode="r")
    except Exception as exc:  # zarr raises many types for missing or damaged metadata
        raise FieldError(path, f"unreadable Zarr array ({type(exc).__name__}: {exc})") from exc
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    if len(shape) < 2:
        raise FieldError(path, f"expected planes of y/x pixels, found an array of shape {shape}")
    if dtype.kind != "u" or dtype.itemsize != 2:
        raise FieldError(path, f"expected 16-bit unsigned pixels, found {dtype}")
    chunk_bytes = int(np.prod(array.chunks, dtype=np.int64)) * dtype.itemsize
    if chunk_bytes > ZARR_MAX_CHUNK_BYTES:
        raise FieldError(
            path, f"stores chunks of shape {array.chunks} ({chunk_bytes >> 20} MiB), more than the 256 MiB read at once"
        )
    return array


def zarr_plane(path: Path, plane: int, arrays: dict | None = None):
    """The Zarr array at path (open_zarr) and the selection of its flat plane index, refused if the
    plane is not inside the array. arrays (path -> array) keeps each array opened once for all of a
    field's planes: every open re-reads and re-parses the array's metadata."""
    array = arrays.get(path) if arrays is not None else None
    if array is None:
        array = open_zarr(path)
        if arrays is not None:
            arrays[path] = array
    shape = tuple(array.shape)
    count = int(np.prod(shape[:-2], dtype=np.int64))
    if not 0 <= plane < count:
        raise FieldError(path, f"has {count} planes (shape {shape}), plane {plane} was asked for")
    return array, (*(int(i) for i in np.unravel_index(plane, shape[:-2])), slice(None), slice(None))


def zarr_plane_stored(path: Path, array, selection: tuple) -> bool:
    """Whether some chunk of the plane is on disk: zarr reads a missing chunk as fill_value (zeros),
    which for a field means a copy cut short, not a black image (zarr writes no chunk that is all
    fill_value: a plane of nothing but zeros is refused too). Nested keys (v3's c/0/1/..., v2 with
    "/"): a file below the folder of the plane's leading chunk coordinates; flat keys (v2's
    0.1.0.0): one of the plane's first 256 chunk files (more chunks than that: assumed stored)."""
    grid = array.shards or array.chunks  # what is stored: a file per chunk, or per shard of chunks
    leading = tuple(i // g for i, g in zip(selection[:-2], grid))
    first = array.metadata.encode_chunk_key((*leading, 0, 0))
    if "/" in first:
        metadata = {".zarray", ".zattrs", "zarr.json"}
        return any(set(files) - metadata for _, _, files in os.walk(path.joinpath(*first.split("/")[:-2])))
    rows, columns = (-(-n // g) for n, g in zip(array.shape[-2:], grid[-2:]))
    keys = (array.metadata.encode_chunk_key((*leading, r, c)) for r in range(rows) for c in range(columns))
    return rows * columns > 256 or any((path / key).is_file() for key in islice(keys, 256))


def zstd_planes(array) -> bool:
    """Whether each chunk of the array is one whole plane of little-endian uint16 pixels compressed
    by zstd alone, as ome-zarr-py writes them (Zarr v2 and v3): one file, one zstd frame."""
    from zarr.codecs import BytesCodec, ZstdCodec

    if array.shards is not None or tuple(array.chunks) != (*(1,) * (len(array.shape) - 2), *array.shape[-2:]):
        return False
    if np.dtype(array.dtype) != np.dtype("<u2"):
        return False
    metadata = array.metadata
    if metadata.zarr_format == 3:
        codecs = tuple(metadata.codecs)
        return (
            len(codecs) == 2
            and isinstance(codecs[0], BytesCodec)
            and getattr(codecs[0].endian, "value", None) == "little"
            and isinstance(codecs[1], ZstdCodec)
        )
    return not metadata.filters and metadata.order == "C" and getattr(metadata.compressor, "codec_id", None) == "zstd"


def zstd_bound(size: int) -> int:
    """The most bytes zstd can make of size bytes (ZSTD_COMPRESSBOUND, with room for the frame header)."""
    return size + (size >> 8) + ((128 << 10) - size >> 11 if size < 128 << 10 else 0) + 64


def decode_zarr_plane(path: Path, array, selection: tuple, out: np.ndarray | None = None) -> np.ndarray:
    """Decode the plane zarr_plane() selected; into out (no copy) when given, of the plane's shape."""
    index = ", ".join(map(str, selection[:-2]))
    missing = FieldError(
        path, f"no pixel data stored for plane [{index}] (its chunk files are missing: a copy cut short?)"
    )
    fast = out is not None and out.dtype == np.uint16 and out.flags.c_contiguous and zstd_planes(array)
    if fast:  # one chunk file per plane: reading it is the check that it is stored
        chunk_path = path / array.metadata.encode_chunk_key((*selection[:-2], 0, 0))
        try:
            if chunk_path.stat().st_size > zstd_bound(out.nbytes):
                raise FieldError(chunk_path, f"larger than any zstd frame of a {size_text(out.shape)} plane")
            chunk = chunk_path.read_bytes()
        except FileNotFoundError:
            raise missing from None
        except OSError as exc:
            raise FieldError(path, f"unreadable Zarr chunk ({type(exc).__name__}: {exc})") from exc
    elif not zarr_plane_stored(path, array, selection):
        raise missing
    try:
        if fast:
            # Not through zarr's asyncio pipeline (a hand-off to its loop thread and thread pool and
            # back, per chunk): with arrays opened once per field, classify / benchmark_app went from
            # 0.86 to 0.91 (benchmarks/classify_throughput.py demo/run/export --precision bf16 --layout ome-zarr).
            decoded = imagecodecs.zstd_decode(chunk, out=out.reshape(-1).view(np.uint8))
            if len(decoded) != out.nbytes:
                raise ValueError(f"{len(decoded)} bytes decoded, a plane of {out.nbytes} expected")
            return out
        if out is not None and array.dtype == np.uint16:
            try:
                from zarr.core.buffer.cpu import NDBuffer  # zarr 3: get_basic_selection(out=) takes an NDBuffer
            except ImportError:  # another zarr version: a copy
                out[...] = array.get_basic_selection(selection)
            else:
                array.get_basic_selection(selection, out=NDBuffer.from_numpy_array(out))
            return out
        image = np.asarray(array.get_basic_selection(selection)).astype(np.uint16)  # big-endian -> native
    except Exception as exc:  # numcodecs and zarr raise many types for damaged chunks
        raise FieldError(path, f"unreadable Zarr chunk ({type(exc).__name__}: {exc})") from exc
    if out is not None:
        out[...] = image
        return out
    return image


def read_zarr_into(path: Path, plane: int, out: np.ndarray, arrays: dict | None = None) -> bool:
    """Decode a plane of a Zarr array of out's shape straight into out; False if path is no Zarr
    folder or the plane another size, for the general path to read and explain. arrays: as zarr_plane's."""
    if not path.is_dir():
        return False
    array, selection = zarr_plane(path, plane, arrays)
    if tuple(array.shape[-2:]) != out.shape:
        return False
    decode_zarr_plane(path, array, selection, out)
    return True


def read_planes(
    paths: tuple[Path, ...], planes: tuple[int, ...], size: tuple[int, int] | None = None, fit: str | None = None
) -> list[np.ndarray]:
    """Planes of multi-plane files, each file opened once. A folder is a Zarr array: its plane's
    declared size must suit the model's (size) and fit before anything is read."""
    images = []
    with ExitStack() as stack:
        opened, arrays = {}, {}
        for path, plane in zip(paths, planes):
            if path.is_dir():
                array, selection = zarr_plane(path, plane, arrays)
                problem = size_problem(tuple(array.shape[-2:]), size, fit)
                if problem:
                    raise FieldError(path, problem)
                images.append(decode_zarr_plane(path, array, selection))
                continue
            if path.suffix.lower() in bioio_files.SUFFIXES:  # a scene's plane of a CZI/ND2/LIF (bioio)
                if not path.is_file():
                    raise FieldError(path, "file not found")

                def refuse_declared(shape, path=path):  # a huge declared scene is refused before it is read
                    problem = size_problem(shape, size, fit)
                    if problem:
                        raise FieldError(path, problem)

                try:
                    images.append(bioio_files.read_plane(path, plane, refuse_declared))
                except FieldError:
                    raise
                except Exception as exc:  # each bioio plugin raises its own types
                    raise FieldError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc
                continue
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
                page = pages[plane]
                check_plane(path, page.shape, page.dtype, size, fit)
                check_tiles(path, page)
                images.append(page.asarray())
            except FieldError:
                raise
            except Exception as exc:  # tifffile and imagecodecs raise many types for damaged files
                raise FieldError(path, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    return images


def max_projection(
    stack: tuple[tuple[Path, int | None], ...], size: tuple[int, int] | None = None, fit: str | None = None
) -> np.ndarray:
    """The brightest value of each pixel over the planes of one channel (--project max)."""
    projected = None
    for path, frame in stack:
        path = Path(path)
        image = read_planes((path,), (frame,), size, fit)[0] if frame is not None else read_tiff(path, size, fit)
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
        raise FieldError(path, size_problem(image.shape, size, "pad"))
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
    arrays: dict = {}  # a field's channels are planes of one Zarr array: opened once
    if field.stack is not None:
        images = [max_projection(stack, size, fit) for stack in field.stack]
    elif field.planes is None and all(read_tiff_into(p, out[c]) for c, p in enumerate(paths)):
        return ""  # the common case: one plane per file at the model's size, decoded in place
    elif field.planes is not None and all(
        read_zarr_into(p, i, out[c], arrays) for c, (p, i) in enumerate(zip(paths, field.planes))
    ):
        return ""  # OME-Zarr planes of the model's size, decoded in place
    else:
        images = (
            read_planes(paths, field.planes, size, fit)
            if field.planes is not None
            else [read_tiff(p, size, fit) for p in paths]
        )
    notes = []
    for channel, (path, image) in enumerate(zip(paths, images)):
        check_pixels(path, image)
        if image.shape != tuple(size):
            if fit is None:
                raise FieldError(path, size_problem(image.shape, size, None))
            image, note = fit_image(path, image, size, fit)
            notes.append(note)
        out[channel] = image
    return "; ".join(dict.fromkeys(notes))

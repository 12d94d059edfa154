"""Reading fields: compressed TIFFs, OME-TIFF planes, every kind of bad file, and --fit pad/resize."""

import imagecodecs
import numpy as np
import pytest
import tifffile

from appliance.imageio import FieldError, read_field, read_plate_field
from appliance.layouts.base import Field
from tests.conftest import truncate

SIZE = (64, 80)


def noise(seed: int, size=SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65535, size, dtype=np.uint16)


def field_of(paths, planes=None) -> Field:
    return Field("P1", "B02", 1, tuple(paths), planes=planes)


def write_channels(tmp_path, images, **kwargs):
    paths = [tmp_path / f"B02_s1_w{i + 1}.tif" for i in range(len(images))]
    for path, image in zip(paths, images, strict=True):
        tifffile.imwrite(path, image, **kwargs)
    return paths


@pytest.mark.parametrize("compression", ["lzw", "deflate", "zstd"])
def test_compressed_tiffs_read_like_plain_ones(tmp_path, compression):
    images = [noise(i) for i in range(3)]
    paths = write_channels(tmp_path, images, compression=compression)
    with tifffile.TiffFile(paths[0]) as tif:
        assert tif.pages[0].compression.name.lower().startswith(compression[:3])
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of(paths), SIZE, out) == ""
    np.testing.assert_array_equal(out, np.stack(images))
    np.testing.assert_array_equal(read_field(paths, SIZE), np.stack(images))  # training's reader too


def test_ome_tiff_planes_in_the_model_order(tmp_path):
    planes = np.stack([noise(i) for i in range(4)])
    path = tmp_path / "B02_s1.ome.tif"
    tifffile.imwrite(path, planes, compression="zstd", metadata={"axes": "CYX"})
    out = np.zeros((3, *SIZE), np.uint16)
    read_plate_field(field_of([path] * 3, planes=(2, 0, 3)), SIZE, out)
    np.testing.assert_array_equal(out, planes[[2, 0, 3]])
    with pytest.raises(FieldError, match="has 4 planes, plane 7 was asked for"):
        read_plate_field(field_of([path] * 3, planes=(0, 1, 7)), SIZE)


def test_missing_file(tmp_path):
    paths = write_channels(tmp_path, [noise(0), noise(1)]) + [tmp_path / "gone.tif"]
    with pytest.raises(FieldError, match="file not found") as error:
        read_plate_field(field_of(paths), SIZE)
    assert error.value.path == str(tmp_path / "gone.tif")


@pytest.mark.parametrize("compression", [None, "lzw", "zstd"])
def test_truncated_file(tmp_path, compression):
    paths = write_channels(tmp_path, [noise(i) for i in range(3)], compression=compression)
    truncate(paths[1])
    with pytest.raises(FieldError, match="unreadable TIFF") as error:
        read_plate_field(field_of(paths), SIZE)
    assert error.value.path == str(paths[1])


def test_truncated_ome_tiff(tmp_path):
    path = tmp_path / "B02_s1.ome.tif"
    tifffile.imwrite(path, np.stack([noise(i) for i in range(3)]), metadata={"axes": "CYX"})
    truncate(path, keep=0.6)  # the chain of planes breaks: tifffile sees only the first
    with pytest.raises(FieldError, match=r"has 1 planes, plane 1 was asked for \(truncated or damaged\?\)"):
        read_plate_field(field_of([path] * 3, planes=(0, 1, 2)), SIZE)


def test_not_a_tiff(tmp_path):
    paths = write_channels(tmp_path, [noise(i) for i in range(3)])
    paths[0].write_bytes(b"<html>a download error page</html>")
    with pytest.raises(FieldError, match="unreadable TIFF"):
        read_plate_field(field_of(paths), SIZE)


def test_wrong_bit_depth(tmp_path):
    paths = write_channels(tmp_path, [noise(0), noise(1), noise(2).astype(np.uint8)])
    with pytest.raises(FieldError, match="expected 16-bit unsigned pixels, found uint8"):
        read_plate_field(field_of(paths), SIZE, fit="pad")  # fit never converts bit depth


def test_rgb_file(tmp_path):
    paths = write_channels(tmp_path, [noise(0), noise(1), np.zeros((*SIZE, 3), np.uint16)])
    with pytest.raises(FieldError, match="one grayscale plane"):
        read_plate_field(field_of(paths), SIZE)


def test_wrong_size_without_fit_names_the_option(tmp_path):
    paths = write_channels(tmp_path, [noise(i, (60, 80)) for i in range(3)])
    with pytest.raises(FieldError, match=r"field is 60x80 \(HxW\), the model takes 64x80 \(--fit pad or --fit resize"):
        read_plate_field(field_of(paths), SIZE)


def test_fit_pad_centres_the_field_with_zeros(tmp_path):
    images = [noise(i, (61, 76)) for i in range(3)]
    paths = write_channels(tmp_path, images)
    out = np.full((3, *SIZE), 7, np.uint16)
    assert read_plate_field(field_of(paths), SIZE, out, fit="pad") == "pad 61x76 -> 64x80"
    np.testing.assert_array_equal(out[:, 1:62, 2:78], np.stack(images))  # the odd pixel goes bottom
    assert out[:, :1].max() == 0 and out[:, 62:].max() == 0 and out[:, :, :2].max() == 0 and out[:, :, 78:].max() == 0


def test_fit_pad_cannot_shrink(tmp_path):
    paths = write_channels(tmp_path, [noise(i, (64, 90)) for i in range(3)])
    with pytest.raises(FieldError, match="larger than the model's 64x80: padding cannot shrink it"):
        read_plate_field(field_of(paths), SIZE, fit="pad")


def test_fit_resize_keeps_the_aspect_ratio_then_pads(tmp_path):
    # 100x160 (HxW) -> one factor 0.5 -> 50x80, then 7 rows of zeros above and below
    image = np.full((100, 160), 1000, np.uint16)
    image[:, 80:] = 3000
    paths = write_channels(tmp_path, [image] * 3)
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of(paths), SIZE, out, fit="resize") == "resize 100x160 -> 50x80, pad 50x80 -> 64x80"
    assert out[:, :7].max() == 0 and out[:, 57:].max() == 0
    assert (out[:, 7:57, :39] == 1000).all() and (out[:, 7:57, 41:] == 3000).all()


def test_fit_resize_scales_a_small_field_up(tmp_path):
    paths = write_channels(tmp_path, [np.full((32, 40), 500, np.uint16)] * 3)
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of(paths), SIZE, out, fit="resize") == "resize 32x40 -> 64x80"
    assert (out == 500).all()


def test_unknown_fit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown fit 'crop'"):
        read_plate_field(field_of([tmp_path / "a.tif"] * 3), SIZE, fit="crop")


# Zarr arrays (OME-Zarr): a Field's path is the array's folder, its plane a flat index over the leading axes.


def zarr_array(tmp_path, data, zarr_format=3, name="0", **kwargs):
    import zarr

    array = zarr.create_array(
        tmp_path / name,
        shape=data.shape,
        chunks=(1,) * (data.ndim - 2) + data.shape[-2:],
        dtype=data.dtype,
        zarr_format=zarr_format,
        **kwargs,
    )
    array[...] = data
    return tmp_path / name


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_planes_are_decoded_in_place(tmp_path, zarr_format):
    from appliance.imageio import read_zarr_into

    data = np.stack([noise(i) for i in range(6)]).reshape(2, 3, *SIZE)  # (c, z, y, x)
    path = zarr_array(tmp_path, data, zarr_format)
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of([path] * 3, planes=(5, 0, 3)), SIZE, out) == ""
    np.testing.assert_array_equal(out, np.stack([data[1, 2], data[0, 0], data[1, 0]]))
    assert read_zarr_into(path, 4, out[0]) and (out[0] == data[1, 1]).all()
    stack = tuple((path, z) for z in range(3))
    read_plate_field(Field("P1", "B02", 1, (path,) * 3, planes=(0, 0, 0), stack=(stack,) * 3), SIZE, out)
    np.testing.assert_array_equal(out[0], data[0].max(axis=0))


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("codec", ["zstd", "blosc", "gzip", "none"])
def test_zarr_codecs_read_alike(tmp_path, zarr_format, codec):
    """Planes compressed by zstd alone (ome-zarr-py's default) imageio decodes itself, any other codec zarr does."""
    import numcodecs
    import zarr

    from appliance.imageio import zstd_planes

    codecs = {
        2: {"zstd": numcodecs.Zstd(level=3, checksum=True), "blosc": numcodecs.Blosc(), "gzip": numcodecs.GZip()},
        3: {
            "zstd": zarr.codecs.ZstdCodec(level=3, checksum=True),
            "blosc": zarr.codecs.BloscCodec(),
            "gzip": zarr.codecs.GzipCodec(),
        },
    }
    data = np.stack([noise(i) for i in range(4)])
    path = zarr_array(tmp_path, data, zarr_format, compressors=codecs[zarr_format].get(codec))
    assert zstd_planes(zarr.open_array(path, mode="r")) == (codec == "zstd")
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of([path] * 3, planes=(3, 0, 2)), SIZE, out) == ""
    np.testing.assert_array_equal(out, data[[3, 0, 2]])


def test_zarr_sharded_planes(tmp_path):
    import zarr

    data = np.stack([noise(i) for i in range(4)])
    array = zarr.create_array(tmp_path / "0", shape=data.shape, chunks=(1, 32, 40), shards=(2, *SIZE), dtype="uint16")
    array[...] = data
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of([tmp_path / "0"] * 3, planes=(3, 0, 2)), SIZE, out) == ""
    np.testing.assert_array_equal(out, data[[3, 0, 2]])


def test_zarr_big_endian_pixels_read_as_their_values(tmp_path):
    data = np.stack([noise(i) for i in range(3)]).astype(">u2")
    path = zarr_array(tmp_path, data, zarr_format=2)
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of([path] * 3, planes=(2, 1, 0)), SIZE, out) == ""
    np.testing.assert_array_equal(out, data[::-1].astype(np.uint16))


def test_zarr_wrong_bit_depth_or_plane(tmp_path):
    path = zarr_array(tmp_path, np.zeros((3, *SIZE), np.uint8))
    with pytest.raises(FieldError, match="expected 16-bit unsigned pixels, found uint8") as error:
        read_plate_field(field_of([path] * 3, planes=(0, 1, 2)), SIZE, fit="pad")
    assert error.value.path == str(path)
    path = zarr_array(tmp_path, np.stack([noise(i) for i in range(3)]), name="1")
    with pytest.raises(FieldError, match=r"has 3 planes \(shape \(3, 64, 80\)\), plane 7 was asked for"):
        read_plate_field(field_of([path] * 3, planes=(0, 1, 7)), SIZE)


def test_zarr_size_is_checked_before_reading(tmp_path):
    import zarr

    path = zarr_array(tmp_path, np.stack([noise(i, (32, 40)) for i in range(3)]))
    with pytest.raises(FieldError, match=r"field is 32x40 \(HxW\), the model takes 64x80 \(--fit pad"):
        read_plate_field(field_of([path] * 3, planes=(0, 1, 2)), SIZE)
    out = np.zeros((3, *SIZE), np.uint16)
    assert read_plate_field(field_of([path] * 3, planes=(0, 1, 2)), SIZE, out, fit="pad") == "pad 32x40 -> 64x80"
    # Metadata alone declaring a huge plane (no chunk is stored): refused from the metadata, nothing allocated.
    huge = tmp_path / "huge"
    zarr.create_array(huge, shape=(3, 100_000, 100_000), chunks=(1, 1024, 1024), dtype="uint16")
    for fit, message in (
        (None, "field is 100000x100000"),
        ("pad", "padding cannot shrink it"),
        ("resize", "more than"),
    ):
        with pytest.raises(FieldError, match=message):
            read_plate_field(field_of([huge] * 3, planes=(0, 1, 2)), SIZE, fit=fit)
    zarr.create_array(tmp_path / "chunky", shape=(3, *SIZE), chunks=(3, 20_000, 20_000), dtype="uint16")
    with pytest.raises(FieldError, match=r"stores chunks of shape \(3, 20000, 20000\) \(2288 MiB\), more than"):
        read_plate_field(field_of([tmp_path / "chunky"] * 3, planes=(0, 1, 2)), SIZE)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_missing_or_damaged_chunks(tmp_path, zarr_format):
    data = np.stack([noise(i) for i in range(3)])
    path = zarr_array(tmp_path, data, zarr_format)
    chunks = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json")))
    assert len(chunks) == 3
    chunks[1].unlink()
    with pytest.raises(FieldError, match=r"no pixel data stored for plane \[1\]"):
        read_plate_field(field_of([path] * 3, planes=(0, 1, 2)), SIZE)
    chunks[2].write_bytes(b"\x00" * 10)
    with pytest.raises(FieldError, match="unreadable Zarr chunk"):
        read_plate_field(field_of([path] * 3, planes=(0, 2, 0)), SIZE)
    chunks[0].write_bytes(imagecodecs.zstd_encode(bytes(10)))  # a whole zstd frame, too short for a plane
    with pytest.raises(FieldError, match=r"unreadable Zarr chunk \(ValueError: 10 bytes decoded"):
        read_plate_field(field_of([path] * 3, planes=(0, 0, 0)), SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FieldError, match="unreadable Zarr array") as error:
        read_plate_field(field_of([tmp_path / "empty"] * 3, planes=(0, 1, 2)), SIZE)
    assert error.value.path == str(tmp_path / "empty")

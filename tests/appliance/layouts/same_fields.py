"""What the layout tests and writers share (harmony, cellvoyager, incell, metaxpress (.HTD), metaxpress-ai,
loaddata, ome-zarr): the Images a writer takes, random fields, their pixels as read back, a plate whose listed file
is gone, and the same fields classified as a BBBC021 plate for comparison."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.imageio import FieldError, read_plate_field
from appliance.layouts.base import CHANNELS, Failure, Field
from appliance.plate import discover_fields
from tests.conftest import SIZE, channel_name

# (well, site) -> the DAPI, Tubulin and Actin arrays of a field: what every writer (write_*.py) lays out
Images = dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def random_images(wells=("B02", "C03"), sites=(1, 2), shape=SIZE, seed=0) -> Images:
    """(well, site) -> DAPI, Tubulin, Actin uint16 arrays of the given shape: (height, width), (planes, height,
    width) or (time points, planes, height, width)."""
    rng = np.random.default_rng(seed)
    return {
        (well, site): tuple(rng.integers(0, 60000, shape, dtype=np.uint16) for _ in CHANNELS)
        for well in wells
        for site in sites
    }


def as_stack(array: np.ndarray) -> np.ndarray:
    """(time points, planes, height, width) from (height, width), (planes, ...) or (time points, planes, ...)."""
    return array.reshape((1,) * (4 - array.ndim) + array.shape)


def pixels(field, size=SIZE) -> np.ndarray:
    """The field as the appliance reads it: (channels, height, width) uint16."""
    out = np.zeros((len(CHANNELS), *size), dtype=np.uint16)
    assert read_plate_field(field, size, out) == ""
    return out


def discovered_with_a_file_gone(plate: Path, channels: str | None, gone: str) -> tuple[list[Field], list[Failure]]:
    """discover_fields(plate), whose first field lists the file `gone` though it is not there: files are not
    opened while the fields are found, so that field is found, and it fails when read, naming the file."""
    fields, failures = discover_fields(plate, channels=channels)
    with pytest.raises(FieldError, match=f"{re.escape(gone)}: file not found"):
        read_plate_field(fields[0], SIZE)
    return fields, failures


def write_bbbc021(folder: Path, images: Images) -> Path:
    """The same fields as a BBBC021 plate: one TIFF per channel, w1 w2 w4 in the name."""
    folder.mkdir(parents=True)
    for (well, site), arrays in images.items():
        for channel, array in zip(CHANNELS, arrays):
            tifffile.imwrite(folder / channel_name(well, site, channel), array)
    return folder


def probabilities(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "fields.csv", newline="") as f:
        return {
            (row["Metadata_Well"], row["Metadata_Site"]): {k: v for k, v in row.items() if k.startswith("Probability_")}
            for row in csv.DictReader(f)
        }


def classified_as_bbbc021(plate: Path, images: Images, tiny_model: Path, tmp_path: Path, channels=None) -> list[dict]:
    """Classify the plate and the same fields as a BBBC021 plate; assert the probabilities of every field the
    plate classified are the BBBC021 ones, to the last digit; returns the plate's failures.csv rows."""
    from appliance.classify import classify_plate
    from appliance.inference import Classifier

    classifier = Classifier(tiny_model)
    twin = write_bbbc021(tmp_path / "bbbc021", images)
    summary = classify_plate(plate, classifier, tmp_path / "out", channels=channels)
    classify_plate(twin, classifier, tmp_path / "twin-out")
    got, want = probabilities(tmp_path / "out"), probabilities(tmp_path / "twin-out")
    assert got and got == {key: want[key] for key in got}
    assert summary["counts"]["classified"] == len(got)
    with open(tmp_path / "out" / "failures.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_planes(plate: Path, images: Images, channels: str, numbers: tuple[int, ...]) -> None:
    """A z-stacked plate: refused without a choice, each plane read as written (`numbers`: the imager's plane
    numbers, in order), and --project max the brightest value of each pixel over them."""
    import pytest

    from appliance.layouts.base import PlateError
    from appliance.plate import discover_fields

    listed = ", ".join(map(str, numbers))
    with pytest.raises(
        PlateError, match=rf"{len(numbers)} planes \({listed}\); choose one with --plane N.*--project max"
    ):
        discover_fields(plate, channels=channels)
    with pytest.raises(PlateError, match=rf"--plane {max(numbers) + 1}: the plate has planes {listed}"):
        discover_fields(plate, channels=channels, plane=max(numbers) + 1)
    for index, plane in enumerate(numbers):
        fields, failures = discover_fields(plate, channels=channels, plane=plane)
        assert failures == [] and {f.source for f in fields} == {f"plane {plane}"}
        for field in fields:
            assert np.array_equal(pixels(field), np.stack([a[index] for a in images[field.well, field.site]]))
    fields, _ = discover_fields(plate, channels=channels, project="max")
    assert fields[0].source == f"max projection of {len(numbers)} planes" and len(fields[0].stack[0]) == len(numbers)
    for field in fields:
        assert np.array_equal(pixels(field), np.stack([a.max(axis=0) for a in images[field.well, field.site]]))

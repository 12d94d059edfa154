"""Synthetic BBBC021-like plates: layout, published CSV format, determinism, realism, separability."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance import metadata, synth
from appliance.imageio import read_field

SMALL = (64, 80)
REAL_IMAGE_CSV = Path(__file__).resolve().parents[3] / "shared" / "bbbc021" / metadata.IMAGE_CSV
PUBLISHED_HEADER = (
    'TableNumber,ImageNumber,"Image_FileName_DAPI","Image_PathName_DAPI","Image_FileName_Tubulin",'
    '"Image_PathName_Tubulin","Image_FileName_Actin","Image_PathName_Actin","Image_Metadata_Plate_DAPI",'
    '"Image_Metadata_Well_DAPI",Replicate,"Image_Metadata_Compound",Image_Metadata_Concentration'
)
FILE_NAME = re.compile(
    r"^(?P<well>[A-H](0[1-9]|1[0-2]))_s(?P<site>[1-4])_w(?P<w>[124])"
    r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}\.tif$"
)
ROW = re.compile(
    r'^(?P<table>\d),(?P<image>\d+),'
    r'"(?P<f1>[^"]+)","(?P<p1>Week\d+/Week\d+_\d{5})","(?P<f2>[^"]+)","(?P=p1)","(?P<f4>[^"]+)","(?P=p1)",'
    r'"(?P<plate>Week\d+_\d{5})","(?P<well>[A-H]\d\d)",(?P<rep>[123]),"(?P<compound>[^"]+)",(?P<conc>\d+\.\d{6})$'
)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    summary = synth.write_dataset(out, plates=2, fields_per_class=5, size=SMALL, seed=7)
    return out, summary


def test_layout_and_file_names(small_set):
    out, summary = small_set
    assert summary["fields"] == 2 * 13 * 5 and summary["classes"] == 13
    assert isinstance(summary["seconds"], float)
    assert [p.name for p in sorted(out.iterdir())] == ["BBBC021_v1_image.csv", "BBBC021_v1_moa.csv", "Week1", "Week2"]
    for week, plate in zip((1, 2), summary["plates"]):
        assert re.fullmatch(rf"Week{week}_\d{{5}}", plate)
        folder = out / f"Week{week}" / plate
        assert [p.name for p in (out / f"Week{week}").iterdir()] == [plate]
        sites = defaultdict(set)
        for path in folder.iterdir():
            match = FILE_NAME.match(path.name)
            assert match, path.name
            sites[(match["well"], int(match["site"]))].add(match["w"])
        assert len(sites) == 13 * 5
        assert all(ws == {"1", "2", "4"} for ws in sites.values())
    image = tifffile.imread(next((out / "Week1").rglob("*_w1*.tif")))
    assert image.dtype == np.uint16 and image.shape == SMALL
    with tifffile.TiffFile(next((out / "Week1").rglob("*_w2*.tif"))) as tif:
        assert tif.pages[0].compression == 1  # uncompressed, like the published set


def test_csv_matches_published_format_and_loads(small_set):
    out, summary = small_set
    lines = (out / metadata.IMAGE_CSV).read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and "\r" not in "".join(lines)
    assert lines[0] == PUBLISHED_HEADER
    if REAL_IMAGE_CSV.is_file():
        with REAL_IMAGE_CSV.open(encoding="utf-8-sig", newline="") as real:
            assert lines[0] == real.readline().rstrip("\r\n")
    rows = [ROW.match(line) for line in lines[1:-1]]
    assert all(rows), [line for line, row in zip(lines[1:-1], rows) if not row][:3]
    for row in rows:
        folder = out / row["p1"]
        assert row["plate"] == row["p1"].split("/")[1]
        assert int(row["table"]) == int(row["plate"].split("_")[0][4:]) % 10
        for name, w in ((row["f1"], "1"), (row["f2"], "2"), (row["f4"], "4")):
            assert name.startswith(f"{row['well']}_s") and FILE_NAME.match(name)["w"] == w
            assert (folder / name).is_file()
    assert (out / metadata.MOA_CSV).read_bytes() == synth.moa_table()

    fields = metadata.load_fields(out)
    assert len(fields) == summary["fields"] == 2 * 13 * 5
    assert len(metadata.class_names(fields)) == 13
    for plate in summary["plates"]:
        per_class = Counter(f.moa for f in fields if f.plate == plate)
        assert set(per_class.values()) == {5}
    wells = defaultdict(set)
    for f in fields:
        wells[(f.plate, f.well)].add((f.compound, f.concentration, f.moa))
        assert 1 <= f.site <= 4 and all(p.is_file() for p in f.paths)
        assert (f.compound == "DMSO") == (f.moa == "DMSO") and (f.concentration == 0) == (f.moa == "DMSO")
    assert all(len(t) == 1 for t in wells.values())  # one treatment per well
    compounds = defaultdict(set)
    for f in fields:
        compounds[f.moa].add(f.compound)
    assert len(compounds["Microtubule destabilizers"]) >= 3 and compounds["DMSO"] == {"DMSO"}


def test_deterministic_and_independent_of_workers(tmp_path, small_set):
    # the second plate of the two-plate set, written alone, in parallel, and with another seed
    args = dict(plates=1, fields_per_class=5, size=SMALL, first_plate=1)
    synth.write_dataset(tmp_path / "a", seed=7, **args)
    synth.write_dataset(tmp_path / "b", seed=7, workers=2, **args)
    synth.write_dataset(tmp_path / "c", seed=8, **args)
    a, b, c = (snapshot(tmp_path / name) for name in "abc")
    assert a == b
    reference = snapshot(small_set[0])
    images = {k: v for k, v in a.items() if k.endswith(".tif")}
    assert len(images) == 13 * 5 * 3 and all(reference[k] == v for k, v in images.items())
    week2_rows = [line for line in reference["BBBC021_v1_image.csv"].decode().split("\n") if "Week2/" in line]
    assert a["BBBC021_v1_image.csv"].decode().split("\n")[1:-1] == week2_rows
    assert not set(images) & set(c)  # other UUIDs and plate number
    assert not set(images.values()) & {v for k, v in c.items() if k.endswith(".tif")}  # other pixels


def test_fields_look_like_microscopy():
    for moa in synth.PHENOTYPES:
        image = synth.render_field(moa, 0.9, 3, np.random.default_rng(1), (256, 320))
        assert image.dtype == np.uint16 and image.shape == (3, 256, 320)
        assert image.max() < 65535 and image.min() > 0
        background = np.median(image.reshape(3, -1), axis=1)
        assert np.all((background > 150) & (background < 800)), (moa, background)
    dmso = synth.render_field("DMSO", 1.0, 3, np.random.default_rng(2), (256, 320)).astype(np.float64)
    assert np.percentile(dmso[0], 99.5) > 2000  # nuclei: thousands of counts over a few hundred
    # a larger field shows more cells at the same scale: DAPI-covered area grows with the field
    big = synth.render_field("DMSO", 1.0, 3, np.random.default_rng(2), (512, 640)).astype(np.float64)
    small_cover = (dmso[0] > 1000).sum()
    big_cover = (big[0] > 1000).sum()
    assert 2.5 < big_cover / small_cover < 6


def features(image: np.ndarray) -> np.ndarray:
    """A few global, hand-made features of a field: what coarse pooling would see."""
    out, cover = [], []
    for channel in image.astype(np.float32):
        background = np.percentile(channel, 10)
        signal = channel - background
        foreground = signal > 250
        cover.append(foreground.mean() + 1e-4)
        h, w = signal.shape
        blocks = signal[: h // 32 * 32, : w // 32 * 32].reshape(h // 32, 32, w // 32, 32).mean(axis=(1, 3))
        out += [signal.mean(), signal.std(), np.percentile(signal, 99), np.percentile(signal, 99.9),
                cover[-1], signal[foreground].mean() if foreground.any() else 0.0, blocks.std()]
    feats = np.log(np.maximum(np.array(out), 0) + 1)
    return np.concatenate([feats, np.log([cover[0] / cover[1], cover[2] / cover[1]])])


def plate_features(root: Path):
    fields = metadata.load_fields(root)
    x = np.stack([features(read_field(f.paths, (256, 320))) for f in fields])
    return x, np.array([f.moa for f in fields])


def test_classes_separate_across_weeks(tmp_path):
    """Nearest centroid on global features: trained on one plate, tested on another week's."""
    synth.write_dataset(tmp_path / "train", plates=1, fields_per_class=8, size=(256, 320), seed=0)
    synth.write_dataset(tmp_path / "test", plates=1, fields_per_class=8, size=(256, 320), seed=0, first_plate=4)
    x_train, y_train = plate_features(tmp_path / "train")
    x_test, y_test = plate_features(tmp_path / "test")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    classes = sorted(set(y_train))
    centroids = np.stack([((x_train[y_train == c] - mean) / std).mean(axis=0) for c in classes])
    distance = ((((x_test - mean) / std)[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    predicted = np.array(classes)[distance.argmin(axis=1)]
    accuracy = float((predicted == y_test).mean())
    assert accuracy >= 0.95, Counter(zip(y_test[predicted != y_test], predicted[predicted != y_test]))

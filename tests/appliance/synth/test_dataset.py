"""Synthetic BBBC021-layout datasets: folders, file names, the published CSV format, determinism."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance import synth
from appliance.layouts import bbbc021 as metadata

SMALL = (64, 80)
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
    r"^(?P<table>\d),(?P<image>\d+),"
    r'"(?P<f1>[^"]+)","(?P<p1>Week\d+/Week\d+_\d{5})","(?P<f2>[^"]+)","(?P=p1)","(?P<f4>[^"]+)","(?P=p1)",'
    r'"(?P<plate>Week\d+_\d{5})","(?P<well>[A-H]\d\d)",(?P<rep>[123]),"(?P<compound>[^"]+)",(?P<conc>\d+\.\d{6})$'
)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    start = time.perf_counter()
    summary = synth.write_dataset(out, plates=2, fields_per_class=5, size=SMALL, seed=7)
    return out, summary, time.perf_counter() - start


def test_layout_and_file_names(small_set):
    out, summary, wall = small_set
    assert summary["fields"] == 2 * 13 * 5 and summary["classes"] == 13
    assert 0 < summary["seconds"] <= wall  # seconds, timed inside the call
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
    for path in out.rglob("*.tif"):
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].compression == 1  # uncompressed, like the published set
            image = tif.asarray()
        assert image.dtype == np.uint16 and image.shape == SMALL, path.name
        assert 0 < image.min() < image.max() < 65535, path.name  # neither blank nor clipped


def test_csv_matches_published_format_and_loads(small_set):
    out, summary, _ = small_set
    lines = (out / metadata.IMAGE_CSV).read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and "\r" not in "".join(lines)
    assert lines[0] == PUBLISHED_HEADER
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


def test_header_and_moa_table_are_the_published_ones(shared_bbbc021):
    with (shared_bbbc021 / metadata.IMAGE_CSV).open(encoding="utf-8-sig", newline="") as real:
        assert real.readline().rstrip("\r\n") == PUBLISHED_HEADER
    assert synth.moa_table() == (shared_bbbc021 / metadata.MOA_CSV).read_bytes()


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


def test_a_plate_holds_at_most_96_wells(tmp_path):
    with pytest.raises(ValueError, match="96-well plate"):  # 13 classes x 8 wells > 96
        synth.write_dataset(tmp_path, plates=1, fields_per_class=4 * 8, size=SMALL)
    assert not any(tmp_path.iterdir())


def test_compound_sets_for_a_not_same_compound_test(tmp_path):
    held = synth.heldout_compounds(0)
    classes = synth.treatments_by_class()
    assert set(held) == {moa for moa, t in classes.items() if len({c for c, _ in t}) > 1}
    assert "DMSO" not in held and all(any(c == held[moa] for c, _ in classes[moa]) for moa in held)
    args = dict(fields_per_class=4, size=SMALL, seed=0)
    synth.write_dataset(tmp_path / "train", plates=2, compounds="train", **args)
    synth.write_dataset(tmp_path / "heldout", plates=1, first_plate=2, compounds="heldout", **args)
    train, test = metadata.load_fields(tmp_path / "train"), metadata.load_fields(tmp_path / "heldout")
    assert len(metadata.class_names(train)) == len(metadata.class_names(test)) == 13
    assert not {f.compound for f in train} & set(held.values())
    assert {f.compound for f in test} == set(held.values()) | {"DMSO"}
    assert not {f.week for f in train} & {f.week for f in test}
    with pytest.raises(ValueError, match="compounds must be one of"):
        synth.write_dataset(tmp_path / "bad", plates=1, compounds="some", **args)

"""The gallery's thumbnails and the QC distance: made while classify reads, kept bounded, written
beside the results, and shown in the report."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import threading
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image

from appliance.classify import classify_plate
from appliance.embedding_reference import EmbeddingReference
from appliance.gallery import PER_SIDE, GalleryKeeper, composite, read_gallery, thumbnail, write_gallery
from appliance.inference import Classifier
from appliance.merge import merge_results
from appliance.model_card import ModelCardError
from appliance.report import write_report
from appliance.result_files import read_results, write_results
from appliance.result_rows import field_key
from tests import tiny_ir
from tests.appliance.test_results import LABELS, made_results
from tests.conftest import CHANNELS, write_plate


def test_a_thumbnail_is_the_mean_of_each_block():
    planes = np.random.default_rng(0).integers(0, 65535, (3, 256, 300), dtype=np.uint16)
    thumb = thumbnail(planes, side=128)
    assert thumb.shape == (3, 85, 100) and thumb.dtype == np.uint16  # blocks of 3 x 3: 300 / 3 = 100 <= 128
    for c, y, x in [(0, 0, 0), (1, 40, 77), (2, 84, 99)]:
        assert thumb[c, y, x] == int(planes[c, 3 * y : 3 * y + 3, 3 * x : 3 * x + 3].astype(float).mean() + 0.5)
    big = np.random.default_rng(1).integers(0, 65535, (3, 1024, 1280), dtype=np.uint16)
    thumb = thumbnail(big)  # blocks of 10 x 10, every other row of each
    assert thumb.shape == (3, 102, 128)
    for c, y, x in [(0, 0, 0), (1, 50, 64), (2, 101, 127)]:
        block = big[c, 10 * y : 10 * y + 10 : 2, 10 * x : 10 * x + 10].astype(float)
        assert thumb[c, y, x] == int(block.mean() + 0.5)
    small = planes[:, :128, :100]
    assert np.array_equal(thumbnail(small), small)  # already small enough: the pixels as they are


def test_composite_is_dapi_blue_tubulin_green_actin_red_each_stretched():
    ramp = np.tile(np.arange(100, dtype=np.uint16) * 10, (50, 1))  # 0 .. 990 left to right
    flat = np.full((50, 100), 500, np.uint16)
    rgb = composite(np.stack([ramp, flat, ramp[:, ::-1]]), CHANNELS)
    assert rgb.shape == (50, 100, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 2] == 0 and rgb[0, -1, 2] == 255  # DAPI in blue, from its 1st to 99.5th percentile
    assert rgb[0, 0, 0] == 255 and rgb[0, -1, 0] == 0  # Actin in red
    assert abs(int(rgb[0, 50, 2]) - round(255 * (500 - 9.9) / (985.05 - 9.9))) <= 1
    assert (rgb[..., 1] == 0).all()  # Tubulin flat: nothing to stretch


def test_the_keeper_holds_each_class_ends_and_no_more():
    rng = np.random.default_rng(1)
    keeper, calls, most_held = GalleryKeeper(), {}, 0
    keys = [("P1", f"B{w:02d}", s) for w in range(2, 40) for s in (1, 2, 3)]
    in_flight = []
    for key in keys:
        keeper.read(key, rng.integers(0, 4000, (3, 16, 16), dtype=np.uint16))
        in_flight.append(key)
        if len(in_flight) == 4:  # results come back a few fields late, not in order
            done = in_flight.pop(int(rng.integers(4)))
            calls[done] = (LABELS[int(rng.integers(3))], float(rng.uniform(0.34, 1.0)))
            keeper.classified(done, *calls[done])
        most_held = max(most_held, len(keeper.thumbnails) + len(keeper.pending))
    for done in in_flight:
        calls[done] = (LABELS[0], float(rng.uniform(0.34, 1.0)))
        keeper.classified(done, *calls[done])

    expected = set()
    for label in LABELS:
        ranked = sorted((k for k in calls if calls[k][0] == label), key=lambda k: calls[k][1])
        expected |= set(ranked[:PER_SIDE]) | set(ranked[-PER_SIDE:])
    assert set(keeper.thumbnails) == expected and not keeper.pending
    assert most_held <= len(LABELS) * 2 * PER_SIDE + 4


def test_gallery_file_round_trips_and_a_damaged_one_is_an_error(tmp_path):
    thumbs = {("P1", "B02", 1): np.arange(12, dtype=np.uint16).reshape(3, 2, 2), ("P1", "C10", 3): np.ones((3, 2, 2))}
    path = write_gallery(tmp_path / "gallery.npz", thumbs)
    back = read_gallery(path)
    assert set(back) == set(thumbs) and all(np.array_equal(back[k], thumbs[k]) for k in thumbs)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="gallery.npz"):
        read_gallery(path)


def images(html: str) -> list[tuple[str, np.ndarray]]:
    """(caption, decoded RGB) of every gallery thumbnail in a report."""
    found = re.findall(r'<img class="thumb"[^>]*src="data:image/png;base64,([^"]+)"><figcaption>([^<]*)', html)
    return [(caption, np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))) for data, caption in found]


def test_the_report_shows_each_class_most_and_least_confident_fields(tmp_path):
    wells = [f"{r}{c:02d}" for r in "BCD" for c in range(2, 8)]
    results = made_results(tmp_path, wells, sites=2)
    rng = np.random.default_rng(2)
    results.thumbnails = {field_key(f): rng.integers(0, 4000, (3, 20, 24), dtype=np.uint16) for f in results.fields}
    html = write_report(results).read_text()
    shown = images(html)
    for label in LABELS:
        rows = sorted(
            (f for f in results.fields if f["Classify_Class"] == label), key=lambda f: -f["Classify_Confidence"]
        )
        captions = [f"{f['Metadata_Well']} site {f['Metadata_Site']} · {f['Classify_Confidence']:.2f}" for f in rows]
        section = html.split(f"{label} <span")[1].split("<h3>")[0]
        in_order = re.findall(r"<figcaption>([^<]*)", section)
        assert in_order == captions[:PER_SIDE] + captions[::-1][: min(PER_SIDE, len(rows) - PER_SIDE)]
    assert len(shown) == sum(
        min(2 * PER_SIDE, sum(f["Classify_Class"] == label for f in results.fields)) for label in LABELS
    )
    assert all(image.shape == (20, 24, 3) for _, image in shown)
    caption, image = shown[0]
    row = next(f for f in results.fields if caption.startswith(f"{f['Metadata_Well']} site {f['Metadata_Site']} "))
    assert np.array_equal(image, composite(results.thumbnails[field_key(row)], CHANNELS))


def test_far_fields_are_flagged_on_the_map_and_listed(tmp_path):
    results = made_results(
        tmp_path,
        ["B02", "B03", "C02"],
        sites=2,
        run={"distance": {"threshold": 5.0, "percentile": 99.0, "training_fields": 40}},
    )
    for i, f in enumerate(results.fields):
        f["Classify_Distance"] = 9.5 if (f["Metadata_Well"], f["Metadata_Site"]) == ("B03", 2) else 1.0 + i / 10
    html = write_report(results).read_text()
    assert "1 of 6 fields lie further from every training class centroid than 5" in html
    b03 = re.search(r'data-well="B03"><title>(.*?)</title>(.*?)</g>', html, re.DOTALL)
    assert "QC: 1 field(s) far from the training set (distance &gt; 5)" in b03.group(1) and "<path" in b03.group(2)
    b02 = re.search(r'data-well="B02"><title>(.*?)</title>(.*?)</g>', html, re.DOTALL)
    assert "QC" not in b02.group(1) and "<path" not in b02.group(2)
    assert '<td>B03</td><td class="n">2</td>' in html and "9.50" in html


def test_treatments_of_known_moa_make_a_confusion_matrix(tmp_path):
    wells = ["B02", "B03", "B04", "C02"]
    compounds = {"B02": "taxol", "B03": "cytochalasin B", "B04": "DMSO", "C02": "nocodazole"}
    results = made_results(tmp_path, wells, sites=1, compounds=compounds)
    moa = {"taxol": "Microtubule stabilizers", "cytochalasin B": "Actin disruptors", "DMSO": "DMSO"}
    for f in results.fields:
        f["Metadata_MoA"] = moa.get(f["Metadata_Compound"])  # nocodazole's MoA unknown here
    html = write_report(results).read_text()
    given = {t["Metadata_Compound"]: t["Classify_Class"] for t in results.treatments}
    right = sum(given[c] == m for c, m in moa.items())
    assert f"3 treatments of known MoA; {right} ({right / 3:.0%}) given their MoA as class" in html
    table = html.split('<table class="confusion">')[1].split("</table>")[0]
    for compound, truth in moa.items():
        row = re.search(rf"<th>{truth}</th>(.*?)</tr>", table).group(1)
        cells = re.findall(r"<td[^>]*>(\d*)</td>", row)
        assert cells[LABELS.index(given[compound])] == "1" and cells[-1] == "1"

    assert (
        "Treatments against their MoA"
        not in write_report(made_results(tmp_path, wells, compounds=compounds)).read_text()
    )


@pytest.fixture(scope="module")
def classified(tiny_model, tmp_path_factory):
    """A tiny plate classified with embeddings, stopped once and finished by a second run."""
    folder = tmp_path_factory.mktemp("gallery")
    plate, out = folder / "Week1_22123", folder / "out"
    written = write_plate(plate, wells=("B02", "B03", "C02", "C03"), sites=(1, 2, 3))
    classifier = Classifier(tiny_model)
    stop = threading.Event()
    first = classify_plate(
        plate,
        classifier,
        out,
        embeddings=True,
        stop=stop,
        chunk_fields=2,
        readers=1,
        progress=lambda done, total, rate: done >= 4 and stop.set(),
    )
    assert first["interrupted"] and (out / "gallery.npz").is_file()
    summary = classify_plate(plate, classifier, out, embeddings=True, chunk_fields=2)
    return classifier, written, out, summary


def test_classify_records_each_field_distance_to_the_training_set(classified):
    classifier, _, out, summary = classified
    reference = classifier.card.reference
    fields = pq.read_table(out / "fields.parquet").to_pylist()
    vectors = read_results(out).embeddings.astype(np.float64)
    # worked out here: Euclidean distance to each centroid, the nearest one
    expected = [min(np.linalg.norm(v - c) for c in reference.centroids.astype(np.float64)) for v in vectors]
    assert [f["Classify_Distance"] for f in fields] == pytest.approx(expected, rel=1e-5)
    assert summary["distance"]["threshold"] == pytest.approx(reference.threshold, rel=1e-5)
    assert summary["distance"]["flagged"] == sum(d > reference.threshold for d in expected)


def test_thumbnails_are_made_from_the_fields_read_across_a_resumed_run(classified):
    _, written, out, summary = classified
    results = read_results(out)
    thumbs = results.thumbnails
    assert summary["counts"]["skipped_done"] >= 4  # the first run's fields kept their thumbnails
    for label in LABELS:
        rows = [f for f in results.fields if f["Classify_Class"] == label]
        ranked = sorted(rows, key=lambda f: f["Classify_Confidence"])
        wanted = {field_key(f) for f in ranked[:PER_SIDE] + ranked[-PER_SIDE:]}
        assert wanted <= set(thumbs)
    assert len(thumbs) <= len(LABELS) * 2 * PER_SIDE
    for (_, well, site), thumb in thumbs.items():  # 128 x 128 fields: the thumbnail is the field itself
        files = written[(well, site)]
        assert np.array_equal(thumb, np.stack([tifffile.imread(files[c]) for c in CHANNELS]))


def test_embedding_reference_centroids_threshold_and_card_text():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 6))
    classes = [LABELS[i % 3] for i in range(40)]
    reference = EmbeddingReference.from_embeddings(vectors, classes)
    for label, centroid in zip(reference.labels, reference.centroids, strict=True):
        assert centroid == pytest.approx(vectors[[c == label for c in classes]].mean(axis=0), rel=1e-6)
    own = [min(np.linalg.norm(v - c) for c in reference.centroids) for v in vectors]
    assert reference.threshold == pytest.approx(np.percentile(own, 99), rel=1e-6) and reference.fields == 40
    back = EmbeddingReference.from_metadata(reference.to_metadata())
    assert back.labels == reference.labels and back.threshold == reference.threshold
    assert back.centroids == pytest.approx(reference.centroids, rel=1e-5)
    with pytest.raises(ValueError, match="width 5"):
        reference.distances(np.zeros((1, 5)))


def test_results_without_thumbnails_or_reference_say_so(tmp_path):
    results = made_results(tmp_path, ["B02"])
    write_results(results)
    html = (tmp_path / "report.html").read_text()
    assert "No thumbnails" in html and "Not measured: the model carries no summary" in html
    assert not (tmp_path / "gallery.npz").exists()


def test_merge_joins_the_shards_thumbnails_and_flags(tiny_model, tmp_path):
    plate = tmp_path / "Week1_22123"
    write_plate(plate, wells=("B02", "B03", "C02", "C03"), sites=(1, 2))
    classifier = Classifier(tiny_model)
    shards = [classify_plate(plate, classifier, tmp_path / f"s{i}", shard=(i, 2)) for i in range(2)]
    merged = merge_results([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    parts = [read_results(tmp_path / f"s{i}").thumbnails for i in range(2)]
    whole = read_results(tmp_path / "merged").thumbnails
    assert set(whole) == set(parts[0]) | set(parts[1]) and not set(parts[0]) & set(parts[1])
    assert merged["distance"]["flagged"] == sum(s["distance"]["flagged"] for s in shards)
    assert merged["distance"]["threshold"] == shards[0]["distance"]["threshold"]
    html = (tmp_path / "merged" / "report.html").read_text()
    per_class = Counter(f["Classify_Class"] for f in read_results(tmp_path / "merged").fields)
    assert html.count('<img class="thumb"') == sum(min(n, 2 * PER_SIDE) for n in per_class.values())


def test_a_reference_of_another_width_is_refused_before_classifying(tmp_path):
    card = tiny_ir.card()
    wrong = EmbeddingReference.from_embeddings(np.ones((3, 5)), list(LABELS))
    tiny_ir.save(
        tiny_ir.raw_input(tiny_ir.network(), card.normalization),
        tmp_path / "model.xml",
        dataclasses.replace(card, reference=wrong),
    )
    with pytest.raises(ModelCardError, match="512-feature embeddings, the card's training reference has 5"):
        Classifier(tmp_path)

"""Thumbnails of a plate's most and least confident fields per class, for the report's gallery.

classify makes a thumbnail of every field from the planes it has just decoded (block means of
the raw uint16 pixels, the longest side at most THUMB_SIDE), while the field's buffer is still
in memory, and keeps it only while the field is among its class's PER_SIDE most or PER_SIDE
least confident: memory stays at classes x 2 x PER_SIDE thumbnails (plus the few fields in
flight) whatever the plate's size. The kept thumbnails are written beside the results
(gallery.npz, no pickle) so a report rebuilt from the folder shows the same gallery.
The report turns each into a false-colour composite (DAPI blue, Tubulin green, Actin red), each
channel stretched from its 1st to its 99.5th percentile, as a PNG.
"""

from __future__ import annotations

import base64
import heapq
import io
import zipfile
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

from appliance.files import write_atomically

THUMB_SIDE = 128  # pixels, the longest side of a thumbnail
PER_SIDE = 3  # fields per class at each end: the most and the least confident
STRETCH = (1.0, 99.5)  # percentiles mapped to black and full colour, per channel of each thumbnail
COLOURS = {"DAPI": 2, "Tubulin": 1, "Actin": 0}  # channel -> RGB index: blue, green, red
BY_ORDER = (2, 1, 0)  # other channel names: the first blue, the second green, the third red

Key = tuple[str, str, int]  # plate, well, site (result_rows.field_key)


def thumbnail(planes: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """(C, H, W) uint16 -> (C, h, w) uint16 means of f x f blocks, f the least making max(h, w) <= side.

    Blocks of an even number of rows, 4 or more (a 1024 x 1280 field's are 10 x 10), average every
    other row of the block: half the pixels read (the thumbnail is made in the classify loop, for
    every field), the same picture to the eye. The last H % f rows and W % f columns fall outside
    every block: under f pixels at the edge of a picture for the eye, never of anything measured."""
    channels, height, width = planes.shape
    f = max(1, -(-max(height, width) // side))
    step = 2 if f >= 4 and f % 2 == 0 else 1
    h, w = height // f, width // f
    rows = planes[:, : h * f : step, : w * f]  # (C, h * f / step, w * f)
    sums = rows.reshape(channels, h * f // step, w, f).sum(axis=3, dtype=np.uint32)
    sums = sums.reshape(channels, h, f // step, w).sum(axis=2, dtype=np.uint64)
    count = f * (f // step)
    return ((sums + count // 2) // count).astype(np.uint16)  # rounded half up


def composite(thumb: np.ndarray, channels) -> np.ndarray:
    """(C, h, w) uint16 -> (h, w, 3) uint8 RGB, each channel contrast-stretched on its own."""
    rgb = np.zeros((*thumb.shape[1:], 3), dtype=np.uint8)
    named = all(c in COLOURS for c in channels)
    for i, plane in enumerate(thumb[:3]):
        low, high = np.percentile(plane, STRETCH)
        scaled = (plane.astype(np.float32) - low) / max(high - low, 1.0)
        rgb[..., COLOURS[channels[i]] if named else BY_ORDER[i]] = (scaled.clip(0, 1) * 255).round().astype(np.uint8)
    return rgb


def png_data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def ends(rows: list[dict], per_side: int = PER_SIDE) -> tuple[list[dict], list[dict]]:
    """The most confident rows (highest first) and the least (lowest first); no row in both."""
    ranked = sorted(rows, key=lambda r: (-float(r["Classify_Confidence"]), r["Metadata_Well"], r["Metadata_Site"]))
    most = ranked[:per_side]
    least = [r for r in reversed(ranked[per_side:])][:per_side]
    return most, least


class GalleryKeeper:
    """During classification: thumbnails of the fields read, kept while among their class's ends."""

    def __init__(self, per_side: int = PER_SIDE):
        self.per_side = per_side
        self.pending: dict[Key, np.ndarray] = {}  # read, not yet classified: at most the fields in flight
        self.most: dict[str, list] = {}  # class -> min-heap of (confidence, key): the most confident
        self.least: dict[str, list] = {}  # class -> min-heap of (-confidence, key): the least confident
        self.thumbnails: dict[Key, np.ndarray] = {}

    def read(self, key: Key, planes: np.ndarray) -> None:
        self.pending[key] = thumbnail(planes)

    def classified(self, key: Key, label: str, confidence: float) -> None:
        thumb = self.pending.pop(key, None)
        if thumb is not None:
            self.offer(key, label, confidence, thumb)

    def offer(self, key: Key, label: str, confidence: float, thumb: np.ndarray) -> None:
        dropped = []
        for heaps, score in ((self.most, confidence), (self.least, -confidence)):
            heap = heaps.setdefault(label, [])
            if len(heap) < self.per_side:
                heapq.heappush(heap, (score, key))
            elif (score, key) > heap[0]:
                dropped.append(heapq.heapreplace(heap, (score, key))[1])
            else:
                dropped.append(key)
        self.thumbnails[key] = thumb
        kept = {k for heaps in (self.most, self.least) for _, k in heaps[label]}
        for k in set(dropped) - kept:
            self.thumbnails.pop(k, None)


def write_gallery(path: Path, thumbnails: dict[Key, np.ndarray]) -> Path:
    """thumbnails as an .npz: `keys` (plate, well, site as text) and one array per thumbnail."""
    keys = sorted(thumbnails)
    arrays = {f"t{i}": thumbnails[key] for i, key in enumerate(keys)}
    names = np.array([[plate, well, str(site)] for plate, well, site in keys], dtype=str).reshape(-1, 3)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, keys=names, **arrays)

    return write_atomically(path, write)


def read_gallery(path: Path) -> dict[Key, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {
                (str(plate), str(well), int(site)): data[f"t{i}"] for i, (plate, well, site) in enumerate(data["keys"])
            }
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable gallery ({exc})") from exc


def gallery_html(fields: list[dict], labels, channels, thumbnails: dict[Key, np.ndarray], swatch, threshold) -> str:
    """Per class: its most and least confident fields with a thumbnail, as <figure>s (escaped by the caller's rules).

    swatch(i) gives a class's colour dot; threshold: Classify_Distance beyond which a field is flagged, or None."""
    by_class: dict[str, list[dict]] = {}
    for row in fields:
        by_class.setdefault(row["Classify_Class"], []).append(row)
    names = [*labels, *sorted(set(by_class) - set(labels))]
    blocks = []
    for i, name in enumerate(names):
        rows = by_class.get(name, [])
        shown = [r for r in rows if (r["Metadata_Plate"], r["Metadata_Well"], int(r["Metadata_Site"])) in thumbnails]
        if not shown:
            continue
        most, least = ends(shown)
        note = f" ({len(shown)} of its {len(rows)} fields had a thumbnail)" if len(shown) < len(rows) else ""
        blocks.append(
            f'<h3>{swatch(i)}{i + 1}. {escape(name)} <span class="muted">{len(rows)} fields{note}</span></h3>'
        )
        for title, chosen in (("most confident", most), ("least confident", least)):
            if not chosen:
                continue
            figures = []
            for row in chosen:
                thumb = thumbnails[(row["Metadata_Plate"], row["Metadata_Well"], int(row["Metadata_Site"]))]
                distance = row.get("Classify_Distance")
                far = threshold is not None and distance is not None and distance > threshold
                caption = (
                    f"{row['Metadata_Well']} site {row['Metadata_Site']} · {float(row['Classify_Confidence']):.2f}"
                )
                flag = ' <span class="flag" title="far from the training set">far</span>' if far else ""
                figures.append(
                    f'<figure><img class="thumb" width="{thumb.shape[2]}" height="{thumb.shape[1]}" '
                    f'alt="{escape(caption)}" src="{png_data_uri(composite(thumb, channels))}">'
                    f"<figcaption>{escape(caption)}{flag}</figcaption></figure>"
                )
            blocks.append(f'<div class="row"><span class="side">{title}</span>{"".join(figures)}</div>')
    return "".join(blocks)

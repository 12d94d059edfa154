"""Labelled fields to check a model on: a run's split.csv rows or a BBBC021-layout folder.

Export calibrates and gates INT8 on them, and `benchmark` measures accuracy on them. A field
listed but unreadable is an error naming the file (FieldError), never a silent skip.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from appliance.imageio import read_field
from appliance.layouts.base import CHANNELS, Field
from appliance.layouts.bbbc021 import load_fields
from appliance.tables import read_table

SPLIT_CSV = "split.csv"
SPLIT_COLUMNS = ("plate", "well", "site", "moa", "split", "path_dapi", "path_tubulin", "path_actin")


def from_split(run_dir: Path) -> list[Field]:
    """The rows of a run's split.csv (train and val), as `train` wrote them."""
    rows = read_table(Path(run_dir) / SPLIT_CSV, SPLIT_COLUMNS)
    return [
        Field(
            r["plate"],
            r["well"],
            int(r["site"]),
            tuple(Path(r[f"path_{c.lower()}"]) for c in CHANNELS),
            moa=r["moa"] or None,
            split=r["split"],
        )
        for r in rows
    ]


def from_folder(root: Path) -> list[Field]:
    """The labelled fields of a BBBC021-layout folder (image and MoA tables)."""
    return load_fields(root)


def stratified(fields: list[Field], count: int, seed: int = 0) -> list[Field]:
    """Up to `count` fields taking classes in turn, each class in a seeded random order."""
    by_class: dict[str, list[Field]] = defaultdict(list)
    for f in fields:
        by_class[f.moa or ""].append(f)
    rng = np.random.default_rng(seed)
    queues = [[members[i] for i in rng.permutation(len(members))] for _, members in sorted(by_class.items())]
    chosen: list[Field] = []
    for depth in range(max(map(len, queues), default=0)):
        chosen += [queue[depth] for queue in queues if depth < len(queue)]
    return chosen[:count]


def read_raw(fields: list[Field], size: tuple[int, int]) -> np.ndarray:
    """The fields as one uint16 (N, channels, H, W) array."""
    raw = np.empty((len(fields), len(CHANNELS), *size), dtype=np.uint16)
    for i, f in enumerate(fields):
        read_field(f.paths, size, out=raw[i])
    return raw


def accuracy(probabilities: np.ndarray, fields: list[Field], labels: tuple[str, ...]) -> float:
    """Top-1 accuracy in percent against the fields' MoA."""
    unknown = sorted({str(f.moa) for f in fields} - set(labels))
    if unknown:
        raise ValueError(f"fields labelled {', '.join(unknown)}: not classes of this model")
    truth = np.array([labels.index(f.moa) for f in fields])
    return float(100.0 * (np.argmax(probabilities, axis=1) == truth).mean())

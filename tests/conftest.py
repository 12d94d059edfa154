"""Shared fixtures: tiny BBBC021-named TIFF plates and a tiny exported model (exported once)."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile

SIZE = (128, 128)  # the smallest input the M-CNN takes: 2**6 pooling scales times a final pool of 2
LABELS = ("Actin disruptors", "DMSO", "Microtubule stabilizers")
CHANNELS = ("DAPI", "Tubulin", "Actin")
WAVELENGTHS = {"DAPI": 1, "Tubulin": 2, "Actin": 4}
MEAN, STD = (900.0, 1500.0, 1100.0), (250.0, 400.0, 300.0)


@pytest.fixture(scope="session")
def shared_bbbc021() -> Path:
    """../shared/bbbc021, the real published CSVs. Missing in CI fails (a skip there would hide
    that the real-metadata tests never ran); elsewhere it skips."""
    import os

    from appliance.layouts.bbbc021 import IMAGE_CSV, MOA_CSV

    folder = Path(__file__).resolve().parents[2] / "shared" / "bbbc021"
    if not ((folder / IMAGE_CSV).is_file() and (folder / MOA_CSV).is_file()):
        if os.environ.get("CI") == "true":
            pytest.fail(f"../shared/bbbc021 is missing: CI lays it beside the clone (looked in {folder})",
                        pytrace=False)
        pytest.skip(f"../shared/bbbc021 not present ({folder}); CI runs these tests")
    return folder


def random_channel(rng: np.random.Generator, channel: int, size=SIZE) -> np.ndarray:
    return rng.normal(MEAN[channel], STD[channel], size).clip(0, 65535).astype(np.uint16)


def channel_name(well: str, site: int, channel: str, ext: str = ".tif") -> str:
    """BBBC021 style: G10_s1_w1BEDC2073-A983-4B98-95E9-84466707A25D.tif"""
    return f"{well}_s{site}_w{WAVELENGTHS[channel]}{str(uuid.uuid4()).upper()}{ext}"


def write_field(folder: Path, well: str, site: int, rng: np.random.Generator, size=SIZE,
                channels=CHANNELS) -> dict[str, Path]:
    """Write one field's channel files; returns {channel: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for channel in channels:
        paths[channel] = folder / channel_name(well, site, channel)
        tifffile.imwrite(paths[channel], random_channel(rng, CHANNELS.index(channel), size))
    return paths


def write_plate(folder: Path, wells=("B02", "B03", "C02"), sites=(1, 2), seed: int = 0) -> dict:
    """A complete tiny plate; returns {(well, site): {channel: path}}."""
    rng = np.random.default_rng(seed)
    return {(well, site): write_field(folder, well, site, rng) for well in wells for site in sites}


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as an interrupted copy would."""
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep))


def make_run(run_dir: Path, n_train: int = 2, n_val: int = 3, seed: int = 0) -> Path:
    """A tiny untrained run folder: weights, run.json, split.csv and the TIFFs it lists."""
    import torch  # only the export fixtures need torch

    from training.model import MCNN, MCNNConfig
    from training.run import save_run

    torch.manual_seed(seed)
    model = MCNN(MCNNConfig(height=SIZE[0], width=SIZE[1], num_classes=len(LABELS)))
    save_run(run_dir, model, {
        "run_id": "tiny-test-run", "labels": list(LABELS), "channels": list(CHANNELS),
        "normalization": {"mean": list(MEAN), "std": list(STD)},
    })
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_val):
        well, site = f"B{i + 2:02d}", 1
        paths = write_field(run_dir / "fields", well, site, rng)
        rows.append({"plate": "Week1_22123", "well": well, "site": site, "moa": LABELS[i % len(LABELS)],
                     "split": "train" if i < n_train else "val",
                     **{f"path_{c.lower()}": str(paths[c].resolve()) for c in CHANNELS}})
    with open(run_dir / "split.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="session")
def tiny_export(tiny_run) -> dict:
    """export_run's summary for the tiny run; the model files are in tiny_run/export."""
    from export.exporter import export_run

    return export_run(tiny_run, parity_fields=3, log=lambda line: None)


@pytest.fixture(scope="session")
def tiny_model(tiny_export) -> Path:
    """The folder holding the tiny model.xml / model.onnx."""
    return Path(tiny_export["xml"]).parent

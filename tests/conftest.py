"""Shared, torch-free: tiny BBBC021-named TIFF plates, a split.csv of labelled fields, the real
BBBC021 tables, and `tiny_model`, an IR built with OpenVINO's graph API (tests/tiny_ir.py).

The torch side (a tiny training run and its export) is in tests/export/conftest.py, whose
`tiny_model` is the exported one; tests/appliance/** must run in a virtualenv without torch.
"""

from __future__ import annotations

import csv
import os
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
WIDTH = "80"  # what rich and typer assume without a terminal, as in CI


def pytest_configure(config):
    """Rich and typer size help panels and tables by COLUMNS, else by the terminal pytest runs in:
    pin CI's width, before any console is made, so that no test depends on the developer's
    terminal. Messages never wrap at any width: tests/appliance/test_cli.py runs the installed
    script at COLUMNS=40 to prove it."""
    os.environ["COLUMNS"] = WIDTH


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """OpenVINO's compiled-model cache in the session's temporary folder, never the developer's ~/.cache
    (also for the console scripts tests start: they inherit the environment)."""
    folder = tmp_path_factory.mktemp("model-cache")
    os.environ["MCNN_MODEL_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def shared_bbbc021() -> Path:
    """../shared/bbbc021, the real published CSVs. Missing in CI fails (a skip there would hide
    that the real-metadata tests never ran); elsewhere it skips."""
    from appliance.layouts.bbbc021 import IMAGE_CSV, MOA_CSV

    folder = Path(__file__).resolve().parents[2] / "shared" / "bbbc021"
    if not ((folder / IMAGE_CSV).is_file() and (folder / MOA_CSV).is_file()):
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"../shared/bbbc021 is missing: CI lays it beside the clone (looked in {folder})", pytrace=False
            )
        pytest.skip(f"../shared/bbbc021 not present ({folder}); CI runs these tests")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A folder holding model.xml: raw uint16 (N, 3, 128, 128) in, probabilities over LABELS and a
    512-feature embedding out, the model card in rt_info. Built with OpenVINO's graph API, so the
    runtime's tests (and the runtime image's, tests/docker) need no torch; tests/export overrides
    it with a real export."""
    from tests.tiny_ir import write_model

    folder = tmp_path_factory.mktemp("tiny_model") / "export"
    write_model(folder)
    return folder


def random_channel(rng: np.random.Generator, channel: int, size=SIZE) -> np.ndarray:
    return rng.normal(MEAN[channel], STD[channel], size).clip(0, 65535).astype(np.uint16)


def channel_name(well: str, site: int, channel: str, ext: str = ".tif") -> str:
    """BBBC021 style: G10_s1_w1BEDC2073-A983-4B98-95E9-84466707A25D.tif"""
    return f"{well}_s{site}_w{WAVELENGTHS[channel]}{str(uuid.uuid4()).upper()}{ext}"


def write_field(
    folder: Path, well: str, site: int, rng: np.random.Generator, size=SIZE, channels=CHANNELS
) -> dict[str, Path]:
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


def write_split(run_dir: Path, n_train: int = 2, n_val: int = 3, seed: int = 0) -> list[dict]:
    """A run folder's split.csv as `train` writes it, and the TIFFs it lists (in run_dir/fields):
    wells B02, B03, ... site 1 of plate Week1_22123, labelled LABELS in turn, train rows first."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_val):
        well, site = f"B{i + 2:02d}", 1
        paths = write_field(run_dir / "fields", well, site, rng)
        rows.append(
            {
                "plate": "Week1_22123",
                "well": well,
                "site": site,
                "moa": LABELS[i % len(LABELS)],
                "split": "train" if i < n_train else "val",
                **{f"path_{c.lower()}": str(paths[c].resolve()) for c in CHANNELS},
            }
        )
    with open(run_dir / "split.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def command_line(*arguments, **options) -> list[str]:
    """A command line as typed: the arguments, then `--name value` per option (underscores as dashes),
    a True option as its flag alone (False and None left out)."""
    line = [str(a) for a in arguments]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            line.append(flag)
        elif value is not False and value is not None:
            line += [flag, str(value)]
    return line


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as an interrupted copy would."""
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep))

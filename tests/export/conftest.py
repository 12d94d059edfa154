"""The torch side's fixtures: a tiny untrained run and its real export (exported once a session).

`tiny_model` here is the exported folder (model.onnx, model.xml, parity.json beside the run),
overriding the graph-built one of tests/conftest.py that the runtime's tests use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import CHANNELS, LABELS, MEAN, SIZE, STD, write_split


def make_run(run_dir: Path, n_train: int = 2, n_val: int = 3, seed: int = 0) -> Path:
    """A tiny untrained run folder: weights, run.json, split.csv and the TIFFs it lists."""
    import torch

    from training.model import MCNN, MCNNConfig
    from training.run import save_run

    torch.manual_seed(seed)
    model = MCNN(MCNNConfig(height=SIZE[0], width=SIZE[1], num_classes=len(LABELS)))
    save_run(
        run_dir,
        model,
        {
            "run_id": "tiny-test-run",
            "labels": list(LABELS),
            "channels": list(CHANNELS),
            "normalization": {"mean": list(MEAN), "std": list(STD)},
        },
    )
    write_split(run_dir, n_train, n_val, seed)
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
    """The folder holding the tiny run's exported model.xml / model.onnx (tiny_run/export)."""
    return Path(tiny_export["xml"]).parent


@pytest.fixture(scope="session")
def int8_run(tiny_run, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the tiny run exported with --int8 and a gate it cannot fail (drop <= 100 points):
    (run folder, export_run's summary)."""
    from export.exporter import export_run
    from export.quantize import Int8Options

    run = tmp_path_factory.mktemp("int8") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    return run, export_run(run, parity_fields=3, int8=Int8Options(max_drop=100.0), log=lambda line: None)

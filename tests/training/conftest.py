"""Synthetic BBBC021-layout sets at the smallest field the M-CNN takes (128x128), written once a session."""

import sys
from pathlib import Path

import pytest

from appliance.synth import write_dataset

TINY = (128, 128)


@pytest.fixture(scope="session")
def one_per_class(tmp_path_factory):
    """13 fields, one per class: all trained on (a class of one field has none to hold out)."""
    out = tmp_path_factory.mktemp("one_per_class")
    write_dataset(out, plates=1, fields_per_class=1, size=TINY, seed=1)
    return out


@pytest.fixture(scope="session")
def two_per_class(tmp_path_factory):
    """26 fields, two per class: 13 trained on, 13 held out by the default stratified split."""
    out = tmp_path_factory.mktemp("two_per_class")
    write_dataset(out, plates=1, fields_per_class=2, size=TINY, seed=1)
    return out


def torchrun_the_command(nproc_per_node: int, arguments: list[str], max_restarts: int = 0) -> list[str]:
    """The installed `mcnn-appliance` run as the ranks of a torchrun you start yourself (--no-python)."""
    from training.launch import LaunchOptions, torchrun

    script = Path(sys.executable).parent / "mcnn-appliance"
    options = LaunchOptions(nproc_per_node=nproc_per_node, max_restarts=max_restarts)
    return [*torchrun(options), "--no-python", str(script), *arguments]

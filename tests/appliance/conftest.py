"""The runtime's fixtures: torch-free, like everything under tests/appliance.

`tiny_model` (tests/conftest.py) is built with OpenVINO's graph API; `int8_model` is the same
network behind FakeQuantize ops, as an export --int8 folder holds it. `make test` also runs
tests/appliance in a virtualenv without torch, with MCNN_RUNTIME_ONLY=1.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

RUNTIME_ONLY = os.environ.get("MCNN_RUNTIME_ONLY") == "1"


def console_script() -> Path:
    """The installed `mcnn-appliance` of this interpreter's environment, as a user runs it."""
    script = Path(sys.executable).parent / "mcnn-appliance"
    if not script.is_file():
        found = shutil.which("mcnn-appliance")
        assert found, f"no mcnn-appliance console script beside {sys.executable}: is the package installed?"
        script = Path(found)
    return script


@pytest.fixture(scope="session")
def int8_model(tiny_model, tmp_path_factory) -> Path:
    """An export folder holding tiny_model's model.xml and model-int8.xml (same weights, FakeQuantize)."""
    from tests.tiny_ir import write_int8_model

    folder = tmp_path_factory.mktemp("int8") / "export"
    shutil.copytree(tiny_model, folder)
    write_int8_model(folder)
    return folder


@pytest.fixture
def reachable() -> Path:
    """A folder the unprivileged user of tests/appliance/unprivileged.py can reach; removed afterwards,
    whatever the test left denied in it."""
    from tests.appliance.unprivileged import open_folder

    folder = open_folder()
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o777)
    shutil.rmtree(folder)

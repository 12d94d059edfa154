"""Checkpoints: everything a run needs to continue exactly where it stopped, without pickle.

    RUN/checkpoints/step-00000120.safetensors   one file per checkpoint, the last K kept

A checkpoint is one safetensors file, written to a temporary name and renamed, so a crash never
leaves half of one. Its tensors are the model's weights, the optimizer's state tensors and torch's
RNG state; its metadata holds one JSON document with the rest: where the loop is (step, epoch,
optimizer steps done in the epoch), the epoch's partial sums, the metrics history, the run info,
the optimizer's scalars and numpy's and Python's RNG states.

Which checkpoint a run continues from (`find_checkpoint`), whether its options allow it
(`check_resumable`), and the stop on non-finite weights or loss (RUN/stopped.json: resuming would
only repeat it) are here too.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from appliance.files import write_atomically, write_json
from training.distributed import Ranks, from_master
from training.recipes import TrainConfig
from training.run import WEIGHTS, load_weights

CHECKPOINTS = "checkpoints"
STATE_KEY = "mcnn_training_state"  # the metadata entry holding the JSON document
PREFIX, SUFFIX = "step-", ".safetensors"
STOPPED = "stopped.json"  # written when a non-finite loss stops the run: resuming would only repeat it
# Options a resumed run may change; every other one must be the run's (new options are safe by default).
# Micro-batch and accumulation may change as long as the global batch and the ranks stay.
RESUME_MAY_DIFFER = {
    "data",
    "out",
    "resume",
    "workers",
    "threads",
    "target_acc",
    "batch_size",
    "accumulation",
    "checkpoint_every",
    "keep_checkpoints",
}


class ResumeError(ValueError):
    """A run cannot be continued: no checkpoint, or a different configuration."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}{SUFFIX}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first (temporary files, which start with '.', are not listed)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = folder.glob(f"{PREFIX}*{SUFFIX}") if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) : -len(SUFFIX)]))


def checkpoint_step(path: Path) -> int:
    return int(Path(path).name[len(PREFIX) : -len(SUFFIX)])


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, keep: int) -> Path:
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
    for old in list_checkpoints(run_dir)[: -max(1, keep)]:
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
        load_weights(model, {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, path)
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
            param, name = key[len("optimizer.state.") :].split(".", 1)
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
    return [
        f"{name}: {saved.get(name)!r} -> {current.get(name)!r}"
        for name in sorted(set(saved) | set(current))
        if name not in may_differ and saved.get(name) != current.get(name)
    ]


# --- continuing a run, and stopping one that diverged -------------------------------------------


def find_checkpoint(out: Path, cfg: TrainConfig, restarted: bool, ranks: Ranks) -> Path | None:
    """The checkpoint to continue from (rank 0 picks it for every rank), or None for a new run."""
    if not (cfg.resume or restarted):
        return None
    if (out / STOPPED).is_file():
        stopped = json.loads((out / STOPPED).read_text())
        raise ResumeError(f"{out / STOPPED}: {stopped['message']}")
    found = list_checkpoints(out) if ranks.master else []
    step = from_master(checkpoint_step(found[-1]) if found else -1, ranks)
    if step >= 0:
        return checkpoint_path(out, step)
    if cfg.resume:
        raise ResumeError(
            f"--resume: no checkpoint in {out / CHECKPOINTS}; is {out} a run started by this "
            f"version of `mcnn-appliance train`?"
        )
    return None  # restarted by torchrun before the first checkpoint: start again


def keep_global_batch(cfg: TrainConfig, resumed: dict, world: int) -> TrainConfig:
    """After torchrun restarted the ranks with fewer (or more) nodes (--nnodes MIN:MAX): the run's global
    batch, by more (or less) accumulation, so the schedule and the steps per epoch stay the run's."""
    per_step = cfg.batch_size * world
    if resumed["info"]["global_batch"] % per_step:
        return cfg  # check_resumable names the difference
    return replace(cfg, accumulation=resumed["info"]["global_batch"] // per_step)


def check_resumable(resumed: dict, cfg: TrainConfig, world: int, elastic: bool = False) -> None:
    """Refuse to continue a run with options that would change its data, recipe or schedule (elastic: torchrun
    restarted the ranks, whose number may change; the global batch may not)."""
    saved = resumed["info"]
    differences = config_differences(saved["train_config"], {**asdict(cfg), "size": list(cfg.size)}, RESUME_MAY_DIFFER)
    if Path(saved["train_config"]["data"]).resolve() != Path(cfg.data).resolve():
        differences.append(f"data: {saved['train_config']['data']!r} -> {cfg.data!r}")
    global_batch = cfg.batch_size * cfg.accumulation * world
    if (saved["ranks"], saved["global_batch"]) != (world, global_batch) and not (
        elastic and saved["global_batch"] == global_batch
    ):
        differences.append(
            f"ranks x global batch: {saved['ranks']} x {saved['global_batch']} -> {world} x {global_batch}"
        )
    if differences:
        raise ResumeError(
            f"cannot resume {cfg.out} (run {saved['run_id']}): options differ from the run's: "
            + "; ".join(differences)
            + ". Resume with the run's options, or start a new --out."
        )


def check_finite_weights(model: nn.Module, step: int, epoch: int, out: Path, master: bool) -> None:
    """Every rank checks (the weights are identical on all, so all stop alike)."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        stop_non_finite("the weights are not finite", step, epoch, out, master)


def stop_non_finite(what: str, step: int, epoch: int, out: Path, master: bool) -> None:
    """Stop the run, naming the step; the checkpoints written so far (all good) stay."""
    found = list_checkpoints(out)
    kept = f"the last good checkpoint is {found[-1]}" if found else "no checkpoint had been written yet"
    if (out / WEIGHTS).is_file():
        kept += f"; {out / WEIGHTS} holds the last finished epoch's weights"
    message = (
        f"{what} at step {step} (epoch {epoch}): training stopped; {kept}. Resuming would repeat it: "
        f"start a new run with a lower --lr."
    )
    if master:
        write_json(out / STOPPED, {"step": step, "epoch": epoch, "message": message})
    raise FloatingPointError(message)

"""A training run on disk: what `export` and `evaluate` need to rebuild the model, no pickle.

RUN/weights.safetensors   the state dict
RUN/run.json              model config, labels, channels, normalisation, run id, weights hash,
                          training arguments (absolute data and out paths) and versions; test_data:
                          held-out labelled plates, where the run names some (the demo's)
RUN/metrics.csv           one row per epoch (written by the loop)
RUN/split.csv             which field went to train and which to validation
RUN/steps.csv             every optimizer step's loss and learning rate (written by the loop)
RUN/plan.json             ranks, threads, micro-batch and accumulation (training/plan.py)
RUN/checkpoints/          the newest checkpoints, for --resume (training/checkpoint.py)
RUN/stopped.json          only when a non-finite loss or weight stopped the run
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from appliance.files import write_atomically, write_json
from appliance.model_card import ModelCard, file_sha256
from appliance.normalization import Normalization
from training.model import MCNN, MCNNConfig

WEIGHTS = "weights.safetensors"
RUN_JSON = "run.json"


def save_run(run_dir: Path, model: MCNN, info: dict) -> dict:
    """Save the weights and run.json; returns run.json's content (with the weights' hash)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_atomically(run_dir / WEIGHTS, lambda p: save_file(state, str(p)))
    info = {
        **info,
        "model_config": model.config.to_dict(),
        "weights": WEIGHTS,
        "weights_sha256": file_sha256(run_dir / WEIGHTS),
    }
    write_json(run_dir / RUN_JSON, info)
    return info


def read_run_info(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {run_dir} a run written by `mcnn-appliance train`?")
    return json.loads(path.read_text())


def record_test_data(run_dir: Path, data: Path) -> None:
    """Name in run.json the labelled plates held out of the run (absolute), for `evaluate RUN` when the run
    has no validation fields of its own (the demo trains on all of its data)."""
    info = read_run_info(run_dir)
    write_json(Path(run_dir) / RUN_JSON, {**info, "test_data": str(Path(data).resolve())})


def load_run(run_dir: Path) -> tuple[MCNN, dict]:
    """Rebuild the trained model from a run folder (safetensors: no pickle)."""
    info = read_run_info(run_dir)
    weights = Path(run_dir) / info["weights"]
    if file_sha256(weights) != info["weights_sha256"]:
        raise ValueError(f"{weights}: SHA-256 differs from run.json; the weights were changed")
    model = MCNN(MCNNConfig.from_dict(info["model_config"]))
    load_weights(model, load_file(str(weights)), weights)
    return model.eval(), info


def load_weights(model: MCNN, state: dict, source: Path) -> None:
    """model.load_state_dict(state), refusing by name the weights of another layer layout."""
    if state.keys() != model.state_dict().keys():
        raise ValueError(
            f"{source}: the layer names differ from this version's M-CNN (weights from before 0.x "
            f"commit a785141 number their layers otherwise); retrain with this version"
        )
    model.load_state_dict(state)


def model_card(info: dict) -> ModelCard:
    """The card the exported model carries, from a run's run.json."""
    config = MCNNConfig.from_dict(info["model_config"])
    return ModelCard(
        labels=tuple(info["labels"]),
        channels=tuple(info["channels"]),
        input_height=config.height,
        input_width=config.width,
        normalization=Normalization.from_dict(info["normalization"]),
        run_id=info["run_id"],
        weights_sha256=info["weights_sha256"],
    )

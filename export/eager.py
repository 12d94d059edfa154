"""The trained model in PyTorch: the peers `benchmark` compares OpenVINO with.

Lives outside `appliance` because it imports torch; `export.benchmark` times it beside OpenVINO.
The model runs as training/predict.py's Predictor, the module export traces, in the ways a PyTorch
user would run it instead of our appliance:
    f32        eager, as trained
    bf16       eager under CPU autocast to bfloat16, channels_last memory format
    compiled   torch.compile (inductor) of the bf16 channels_last model
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from appliance.model_card import ModelCard
from training.predict import load_predictor
from training.process import set_threads

MODES = ("f32", "bf16", "compiled")


def eager_predictor(run_dir: Path, threads: int | None = None, mode: str = "f32"):
    """(predict, card): predict maps raw uint16 (N, C, H, W) fields to probabilities (N, classes)."""
    if mode not in MODES:
        raise ValueError(f"torch mode {mode!r}: choose one of {', '.join(MODES)}")
    module, _ = load_predictor(run_dir)
    card: ModelCard = module.card
    fast = mode != "f32"
    if fast:
        module = module.to(memory_format=torch.channels_last)
    forward = torch.compile(module) if mode == "compiled" else module

    def predict(raw: np.ndarray) -> np.ndarray:
        set_threads(threads)  # per call: torch's thread count is global and other predictors may differ
        if not fast:
            return module.predict(raw)[0]
        fields = torch.from_numpy(card.normalization.apply(raw)).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            probabilities, _ = forward(fields)
        return probabilities.float().numpy()

    return predict, card

"""The trained model in PyTorch eager mode, fp32: the baseline `benchmark` compares OpenVINO with.

Lives outside `appliance` because it imports torch; `export.benchmark` times it beside OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from appliance.model_card import ModelCard
from export.exporter import Exported
from training.process import set_threads
from training.run import load_run, model_card


def eager_predictor(run_dir: Path, threads: int | None = None):
    """(predict, card): predict maps raw uint16 (N, C, H, W) fields to probabilities (N, classes)."""
    model, info = load_run(run_dir)
    card: ModelCard = model_card(info)
    module = Exported(model).eval()

    def predict(raw: np.ndarray) -> np.ndarray:
        set_threads(threads)  # per call: torch's thread count is global and other predictors may differ
        with torch.inference_mode():
            return module(torch.from_numpy(card.normalization.apply(raw)))[0].numpy()

    return predict, card

"""The trained model in PyTorch eager mode, fp32: the baseline `benchmark` compares OpenVINO with.

Lives outside `appliance` because it imports torch; `export.benchmark` times it beside OpenVINO.
The model runs as training/predict.py's Predictor, the module export traces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.model_card import ModelCard
from training.predict import load_predictor
from training.process import set_threads


def eager_predictor(run_dir: Path, threads: int | None = None):
    """(predict, card): predict maps raw uint16 (N, C, H, W) fields to probabilities (N, classes)."""
    module, _ = load_predictor(run_dir)
    card: ModelCard = module.card

    def predict(raw: np.ndarray) -> np.ndarray:
        set_threads(threads)  # per call: torch's thread count is global and other predictors may differ
        return module.predict(raw)[0]

    return predict, card

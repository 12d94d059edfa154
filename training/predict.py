"""The trained model as the appliance runs it, in torch: the one torch path from fields to answers.

    raw uint16 (N, C, H, W) -> the model card's normalisation -> M-CNN -> softmax, and the embedding

`Predictor.forward` takes normalised fields (export traces it: the IR then puts the normalisation
into the graph); `Predictor.predict` takes raw fields. Export's parity reference, the eager
baseline of `benchmark` and `evaluate` of a torch run all call it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from appliance.model_card import ModelCard
from training.model import MCNN
from training.run import load_run, model_card


class Predictor(nn.Module):
    """Class probabilities and the field's embedding (the 512 features before the head) in one pass."""

    def __init__(self, model: MCNN, card: ModelCard):
        super().__init__()
        self.model, self.card = model, card

    def forward(self, fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.forward_features(fields)
        return torch.softmax(self.model.forward_head(embedding), dim=1), embedding

    def predict(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, classes), embeddings (N, hidden)) of raw uint16 fields, in fp32."""
        with torch.inference_mode():
            probabilities, embedding = self(torch.from_numpy(self.card.normalization.apply(raw)))
        return probabilities.numpy(), embedding.numpy()


def load_predictor(run_dir: Path) -> tuple[Predictor, dict]:
    """A run's Predictor, in eval mode, and its run.json."""
    model, info = load_run(run_dir)
    return Predictor(model, model_card(info)).eval(), info

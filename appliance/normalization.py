"""The one normalisation shared by training and classification.

A per-channel affine map fitted on the training set, (raw - mean) / std in 16-bit units.
It is dataset-level on purpose: per-image standardisation would erase phenotypes that
differ in overall stain intensity. Its parameters ride inside the exported model, where
OpenVINO's PrePostProcessor can run it in the graph (mean/scale per channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """uint16 (..., channels, H, W) -> float32 normalised, channels on axis -3."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return (raw.astype(np.float32) - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"bad normalisation {d}: need one mean and one positive std per channel")
        return cls(mean, std)


def fit_normalization(fields) -> Normalization:
    """Per-channel mean and std over an iterable of raw (channels, H, W) fields, streamed."""
    total = total_sq = None
    count = 0
    for field in fields:
        pixels = field.reshape(field.shape[0], -1).astype(np.float64)
        sums, sums_sq = pixels.sum(axis=1), (pixels * pixels).sum(axis=1)
        total = sums if total is None else total + sums
        total_sq = sums_sq if total_sq is None else total_sq + sums_sq
        count += pixels.shape[1]
    if not count:
        raise ValueError("cannot fit a normalisation on no fields")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return Normalization(tuple(float(m) for m in mean), tuple(float(max(s, 1.0)) for s in std))

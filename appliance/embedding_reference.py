"""How far a field lies from what the model was trained on, measured in its embedding space.

Export summarises the training fields' embeddings (the 512 features before the head) as one
centroid per class, and the distance each training field has to its nearest centroid; the
summary rides in the model card (rt_info key `embedding_reference`), so the runtime needs nothing
beside the model file. A field's `Classify_Distance` is the Euclidean distance of its embedding to
the nearest centroid; it is flagged when that exceeds `threshold`, the given percentile (99th) of
the training fields' own distances: further out than 99 in 100 of the fields the model learnt from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

KEY = "embedding_reference"  # the model card's rt_info key
PERCENTILE = 99.0
METRIC = "euclidean distance to the nearest class centroid of the training embeddings"


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class EmbeddingReference:
    centroids: np.ndarray  # (classes, width) float32, one per label that had training fields
    labels: tuple[str, ...]  # the class of each centroid
    threshold: float  # a distance beyond this is flagged
    percentile: float  # of the training fields' own distances, that made the threshold
    fields: int  # training fields summarised

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, classes: list[str], percentile: float = PERCENTILE):
        """The summary of training embeddings (N, width), classes[i] the label of row i."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if embeddings.ndim != 2 or len(embeddings) != len(classes) or not len(classes):
            raise ValueError(f"{len(classes)} labels for embeddings of shape {embeddings.shape}")
        labels = tuple(dict.fromkeys(classes))
        centroids = np.stack([embeddings[[c == label for c in classes]].mean(axis=0) for label in labels])
        reference = cls(centroids.astype(np.float32), labels, 0.0, percentile, len(classes))
        threshold = float(np.percentile(reference.distances(embeddings), percentile))
        return cls(reference.centroids, labels, threshold, percentile, len(classes))

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) distance of each embedding (N, width) to its nearest centroid."""
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if embeddings.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"embeddings of width {embeddings.shape[1]}, the reference has {self.centroids.shape[1]}")
        gaps = embeddings[:, None, :] - self.centroids[None, :, :].astype(np.float64)
        return np.sqrt((gaps**2).sum(axis=2)).min(axis=1)

    def to_metadata(self) -> str:
        return json.dumps(
            {
                "metric": METRIC,
                "labels": list(self.labels),
                "centroids": [[float(f"{v:.6g}") for v in row] for row in self.centroids],
                "threshold": self.threshold,
                "percentile": self.percentile,
                "fields": self.fields,
            }
        )

    @classmethod
    def from_metadata(cls, text: str) -> EmbeddingReference:
        meta = json.loads(text)
        centroids = np.asarray(meta["centroids"], dtype=np.float32)
        if centroids.ndim != 2 or len(centroids) != len(meta["labels"]):
            raise ValueError(f"{len(meta['labels'])} labels for centroids of shape {centroids.shape}")
        return cls(
            centroids, tuple(meta["labels"]), float(meta["threshold"]), float(meta["percentile"]), meta["fields"]
        )

    def summary(self) -> dict:
        """What summary.json records of it."""
        return {
            "metric": METRIC,
            "threshold": round(self.threshold, 6),
            "percentile": self.percentile,
            "training_fields": self.fields,
        }

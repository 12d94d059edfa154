"""The training embeddings' summary the model card carries (appliance/embedding_reference.py).

Export runs the trained model over a stratified sample of the run's training fields (up to
REFERENCE_FIELDS, classes in turn) and keeps one centroid per class and the 99th percentile of
those fields' distances to their nearest centroid. A sample, not every field: a full BBBC021
training set is thousands of 1024x1280 fields, and a few hundred place the centroids to well
within the spread of the fields around them. Fields are read a batch at a time, so memory stays
at one batch whatever the sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.embedding_reference import EmbeddingReference
from appliance.fieldsets import SPLIT_CSV, from_split, read_raw, stratified
from appliance.imageio import FieldError
from export import ExportError

REFERENCE_FIELDS = 256  # training fields sampled, classes in turn
BATCH = 4


def training_reference(
    predict, run_dir: Path, size: tuple[int, int], count: int = REFERENCE_FIELDS
) -> EmbeddingReference:
    """predict(raw uint16 batch) -> (probabilities, embeddings); the reference of the run's training fields."""
    train = [f for f in from_split(run_dir) if f.split == "train" and f.moa]
    if not train:
        raise ExportError(f"{Path(run_dir) / SPLIT_CSV}: no labelled training fields to summarise the embeddings of")
    chosen = stratified(train, count)
    embeddings = []
    for start in range(0, len(chosen), BATCH):
        batch = chosen[start : start + BATCH]
        try:
            raw = read_raw(batch, size)
        except FieldError as exc:
            raise ExportError(
                f"training field {exc.path} (listed in {Path(run_dir) / SPLIT_CSV}): {exc.reason}"
            ) from exc
        embeddings.append(predict(raw)[1])
    return EmbeddingReference.from_embeddings(np.concatenate(embeddings), [f.moa for f in chosen])

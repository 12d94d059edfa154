"""A classic baseline beside the M-CNN: hand-made image features into a logistic regression.

The first question a reviewer asks of a deep model in this field is whether it beats simple
features, even cell count. Per field:

    intensity   each stain's mean, standard deviation and 1/50/90/99/99.9th percentiles
    nuclei      a DAPI segmentation (Otsu threshold, labelled blobs): count, covered fraction,
                mean and spread of area, eccentricity and solidity, mean nucleus brightness
    texture     on a 4x downsampled field: grey-level co-occurrence (GLCM) contrast,
                homogeneity, correlation and energy, and mean / spread of the gradient

all as logarithms where they are positive, so that a ratio of two is one weight away; then
standardised and a multinomial logistic regression, trained on the run's training fields.
`predict_split` takes the same fields and field size the M-CNN does; `add_to_evaluation` scores
it on the split `evaluate` scored the model on (`evaluate --baseline`), export/demo.py on the
demo's held-out plate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table
from skimage.feature import graycomatrix, graycoprops
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops
from skimage.transform import downscale_local_mean
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from appliance.files import write_json
from appliance.imageio import FieldError, read_field
from appliance.layouts.base import Field
from training.evaluate import Predictions, choose_fields, run_of, score, show
from training.run import model_card, read_run_info

PERCENTILES = (1, 50, 90, 99, 99.9)
GLCM_PROPS = ("contrast", "homogeneity", "correlation", "energy")
MIN_NUCLEUS_PX = 20  # smaller DAPI blobs are noise or debris, not nuclei


def intensity_features(image: np.ndarray) -> list[float]:
    out = []
    for channel in image:
        out += [float(channel.mean()), float(channel.std()), *np.percentile(channel, PERCENTILES).tolist()]
    return out


def nucleus_features(dapi: np.ndarray) -> list[float]:
    """Count, covered fraction, area mean and spread, eccentricity, solidity, brightness of DAPI blobs."""
    mask = dapi > threshold_otsu(dapi)
    regions = [r for r in regionprops(label(mask), intensity_image=dapi) if r.area >= MIN_NUCLEUS_PX]
    if not regions:
        return [0.0, float(mask.mean()), 0.0, 0.0, 0.0, 0.0, 0.0]
    area = np.array([r.area for r in regions], dtype=np.float64)
    return [
        float(len(regions)),
        float(mask.mean()),
        float(area.mean()),
        float(area.std()),
        float(np.mean([r.eccentricity for r in regions])),
        float(np.mean([r.solidity for r in regions])),
        float(np.mean([r.intensity_mean for r in regions])),
    ]


def texture_features(image: np.ndarray) -> list[float]:
    """GLCM statistics (distance 1 and 2, four angles averaged) and gradient stats per stain, at 1/4 scale."""
    out = []
    for channel in image:
        small = downscale_local_mean(channel.astype(np.float32), (4, 4))
        low, high = np.percentile(small, (1, 99.5))
        levels = np.clip((small - low) / max(high - low, 1e-6) * 31, 0, 31).astype(np.uint8)
        glcm = graycomatrix(levels, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, normed=True)
        out += [float(graycoprops(glcm, prop).mean()) for prop in GLCM_PROPS]
        gy, gx = np.gradient(small)
        magnitude = np.hypot(gx, gy)
        out += [float(magnitude.mean()), float(magnitude.std())]
    return out


def field_features(image: np.ndarray) -> np.ndarray:
    """The baseline's features of one uint16 (3, H, W) field (DAPI, Tubulin, Actin), log where positive."""
    image = image.astype(np.float32)
    raw = np.array(intensity_features(image) + nucleus_features(image[0]) + texture_features(image))
    return np.sign(raw) * np.log1p(np.abs(raw))


def features(fields: list[Field], size: tuple[int, int]) -> tuple[np.ndarray, list[Field], list[dict]]:
    """(features of every readable field, those fields, failures {"field", "error"})."""
    rows, kept, failed = [], [], []
    for f in fields:
        try:
            rows.append(field_features(read_field(f.paths, size)))
            kept.append(f)
        except FieldError as exc:
            failed.append({"field": f"{f.plate}/{f.well}/s{f.site}", "error": str(exc)})
    return (np.stack(rows) if rows else np.zeros((0, 0))), kept, failed


@dataclass
class Baseline:
    model: Pipeline
    labels: tuple[str, ...]  # the M-CNN's classes, in its order: probabilities line up with its own

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(fields, len(labels)) probabilities; classes absent from training get 0."""
        out = np.zeros((len(x), len(self.labels)))
        index = [self.labels.index(c) for c in self.model.classes_]
        out[:, index] = self.model.predict_proba(x)
        return out


def fit(x: np.ndarray, classes: list[str], labels: tuple[str, ...], seed: int = 0) -> Baseline:
    """Standardise, then a multinomial logistic regression (L2, C=1) on the training fields' features."""
    if len(set(classes)) < 2:
        raise ValueError("the baseline needs training fields of at least two classes")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
    model.fit(x, classes)
    return Baseline(model, tuple(labels))


def predict_split(
    train_fields: list[Field], test_fields: list[Field], labels: tuple[str, ...], size: tuple[int, int], seed: int = 0
) -> tuple[list[Field], np.ndarray, list[dict]]:
    """Fit on the readable training fields, then (scored fields, probabilities in `labels` order, failures)."""
    x_train, train_fields, failed = features(train_fields, size)
    if not train_fields:
        raise ValueError(f"none of the {len(failed)} training field(s) could be read for the baseline")
    model = fit(x_train, [f.moa for f in train_fields], labels, seed)
    x_test, test_fields, test_failed = features(test_fields, size)
    probabilities = model.probabilities(x_test) if test_fields else np.zeros((0, len(labels)))
    return test_fields, probabilities, test_failed


# --- the classic baseline beside the model ----------------------------------------------------


def add_to_evaluation(folder: Path, summary: dict, data: Path | None = None, split: str = "val") -> dict:
    """Score the baseline where `evaluate` scored the model (`summary`: its result): fitted on each
    run's training fields, scored on the same `split` fields; its scores go into evaluation.json."""
    folder = Path(folder)
    runs = [folder / name for name in summary["folds"]] if "folds" in summary else [run_of(folder)]
    fields, probabilities, failed = [], [], []
    for run_dir in runs:
        info = read_run_info(run_dir)
        labels, size = tuple(info["labels"]), model_card(info).size
        train_fields = choose_fields(run_dir, info, None, "train").fields  # the run's own training fields
        scored = choose_fields(run_dir, info, data, split).fields  # the fields evaluate scored the model on
        part = predict_split(train_fields, scored, labels, size)
        fields += part[0]
        probabilities.append(part[1])
        failed += part[2]
    scores = score(Predictions(labels, fields, np.concatenate(probabilities), failed))
    summary["baseline"] = {
        "model": "intensity, nuclei and texture features + logistic regression (training/baseline.py)",
        "fields": len(fields),
        "treatments": len(scores.treatments),
        "field_accuracy": scores.field_accuracy,
        "treatment_accuracy": scores.treatment_accuracy,
        "failed": failed,
    }
    write_json(Path(summary["out"]) / "evaluation.json", summary)
    return summary


def side_by_side(summary: dict) -> Table:
    """The model's and the baseline's field and treatment accuracy side by side (in %)."""
    out = Table("", "field accuracy", "treatment accuracy", box=box.SIMPLE_HEAD, title="M-CNN and classic baseline")
    for name, part in (("M-CNN", summary), ("classic baseline", summary["baseline"])):
        out.add_row(name, show(part["field_accuracy"]), show(part["treatment_accuracy"]))
    return out

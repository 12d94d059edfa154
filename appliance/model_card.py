"""The model card: everything the runtime needs, carried inside the exported model files.

`export/` writes it as ONNX metadata_props and OpenVINO rt_info (["model_info", key]), as flat
string keys; `appliance/` reads it back and refuses a model whose card is missing or does not
agree with the network's own input and output shapes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from appliance.embedding_reference import KEY as REFERENCE_KEY
from appliance.embedding_reference import EmbeddingReference
from appliance.normalization import Normalization
from appliance.result_rows import probability_column

CARD_VERSION = "1"
KEYS = (
    "card_version",
    "model_type",
    "labels",
    "channels",
    "input_height",
    "input_width",
    "bit_depth",
    "normalization",
    "run_id",
    "weights_sha256",
    "precision",
)
OPTIONAL_KEYS = (REFERENCE_KEY,)  # a card without them is still read; what they enable is then not done


# Beside the card in rt_info: the SHA-256 of the IR's weights file (model.bin), which export writes
# once the file exists. The .xml holding it cannot hold its own hash; it is checked against the card.
WEIGHTS_FILE_SHA256 = "weights_file_sha256"


class ModelCardError(ValueError):
    """The model's metadata is missing or inconsistent."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelCard:
    labels: tuple[str, ...]
    channels: tuple[str, ...]
    input_height: int
    input_width: int
    normalization: Normalization
    run_id: str
    weights_sha256: str
    bit_depth: int = 16
    model_type: str = "mcnn"
    precision: str = "f32"
    extra: dict = field(default_factory=dict, compare=False)
    reference: EmbeddingReference | None = field(default=None, compare=False)  # for Classify_Distance

    @property
    def size(self) -> tuple[int, int]:
        return (self.input_height, self.input_width)

    def to_metadata(self) -> dict[str, str]:
        """Flat string map, as ONNX metadata_props and OpenVINO rt_info store it."""
        meta = {
            "card_version": CARD_VERSION,
            "model_type": self.model_type,
            "labels": json.dumps(list(self.labels)),
            "channels": json.dumps(list(self.channels)),
            "input_height": str(self.input_height),
            "input_width": str(self.input_width),
            "bit_depth": str(self.bit_depth),
            "normalization": json.dumps(self.normalization.to_dict()),
            "run_id": self.run_id,
            "weights_sha256": self.weights_sha256,
            "precision": self.precision,
        }
        if self.reference is not None:
            meta[REFERENCE_KEY] = self.reference.to_metadata()
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "model") -> ModelCard:
        missing = [k for k in KEYS if k not in meta]
        if missing:
            raise ModelCardError(
                f"{source}: model card incomplete, missing {', '.join(missing)} "
                "(was it exported by `mcnn-appliance export`?)"
            )
        if meta["card_version"] != CARD_VERSION:
            raise ModelCardError(
                f"{source}: model card version {meta['card_version']}, this runtime reads version {CARD_VERSION}"
            )
        try:
            card = cls(
                labels=tuple(json.loads(meta["labels"])),
                channels=tuple(json.loads(meta["channels"])),
                input_height=int(meta["input_height"]),
                input_width=int(meta["input_width"]),
                bit_depth=int(meta["bit_depth"]),
                normalization=Normalization.from_dict(json.loads(meta["normalization"])),
                run_id=meta["run_id"],
                weights_sha256=meta["weights_sha256"],
                model_type=meta["model_type"],
                precision=meta["precision"],
                reference=EmbeddingReference.from_metadata(meta[REFERENCE_KEY]) if REFERENCE_KEY in meta else None,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelCardError(f"{source}: model card unreadable: {exc}") from exc
        if len(card.normalization.mean) != len(card.channels):
            raise ModelCardError(
                f"{source}: normalisation has {len(card.normalization.mean)} "
                f"channels, the card names {len(card.channels)}"
            )
        if not card.labels or len(set(card.labels)) != len(card.labels):
            raise ModelCardError(f"{source}: class labels missing or repeated: {card.labels}")
        check_columns(card.labels, source)
        return card


def check_columns(labels: tuple[str, ...], source: str) -> None:
    """Two labels that give one result column (`A_b`, `A-b`: Probability_A_b) would write one class's
    probabilities over the other's and a Parquet file that cannot be read back: such a model is refused."""
    first: dict[str, str] = {}
    for label in labels:
        column = probability_column(label)
        if column in first:
            raise ModelCardError(
                f"{source}: class labels {first[column]!r} and {label!r} both give the result column {column}; "
                "rename one (in the training run's MoA table) and export again"
            )
        first[column] = label


def check_matches_run(card: ModelCard, model_folder: Path, source: str) -> None:
    """An export inside a run folder (RUN/export) must be that run's: a run retrained since is refused,
    rather than classifying with the old model silently. An export elsewhere carries its card alone."""
    run_json = Path(model_folder).parent / "run.json"
    if not run_json.is_file():
        return
    try:
        run_hash = json.loads(run_json.read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelCardError(f"{run_json}: unreadable ({exc}); cannot tell whether {source} is this run's") from None
    if run_hash and run_hash != card.weights_sha256:
        raise ModelCardError(
            f"{source}: exported from weights {card.weights_sha256[:12]}..., but {run_json} now holds weights "
            f"{run_hash[:12]}... (the run was trained again); export it again: "
            f"mcnn-appliance export {run_json.parent}"
            + ("" if Path(model_folder).name == "export" else f" --out {model_folder}")
        )

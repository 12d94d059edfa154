"""Fields as training examples: read, normalise, augment without changing geometry; each rank's share
of every epoch's shuffle; a run's fields as loaders (`load_data`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from appliance.fieldsets import SPLIT_CSV
from appliance.imageio import read_field
from appliance.layouts.base import Field
from appliance.layouts.bbbc021 import class_names, load_fields
from appliance.normalization import Normalization, fit_normalization
from training.distributed import Ranks
from training.recipes import TrainConfig
from training.splits import check_val_data, select_split, spread_sample, write_split


class FieldDataset(Dataset):
    """(normalised field, class index).

    With augment: random flips (and so 180-degree turns) and a random gain per stain, as the
    imager's weeks differ; never a crop, a resize or anything else that changes geometry.
    """

    def __init__(
        self,
        fields: list[Field],
        labels: list[str],
        size: tuple[int, int],
        normalization: Normalization,
        augment: bool = False,
        gain_jitter: float = 0.0,
        seed: int = 0,
    ):
        self.fields, self.size, self.norm, self.augment = fields, size, normalization, augment
        self.gain_jitter = gain_jitter  # e.g. 0.15: each stain's gain drawn from exp(+-0.15)
        self.index = {name: i for i, name in enumerate(labels)}
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        # key: an index, or (epoch, index) as EpochSampler yields them: a loader's worker processes hold
        # their own copy of the dataset, so setting `epoch` here would not reach them.
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        field = self.fields[i]
        raw = read_field(field.paths, self.size)
        if not self.augment:
            return torch.from_numpy(self.norm.apply(raw)), self.index[field.moa]
        rng = np.random.default_rng((self.seed, epoch, i))  # the same draws whatever the process or resume
        gain = np.exp(rng.uniform(-self.gain_jitter, self.gain_jitter, len(raw))).astype(np.float32)
        x = self.norm.apply(raw * gain[:, None, None])
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        if rng.random() < 0.5:
            x = x[:, ::-1, :]
        return torch.from_numpy(np.ascontiguousarray(x)), self.index[field.moa]


class EpochSampler(DistributedSampler):
    """This rank's share of every epoch's shuffle, a pure function of (seed, epoch), as (epoch, index)
    keys; a resumed run reads the same order, starting `skip` fields in (those already trained)."""

    def __init__(self, dataset: Dataset, ranks: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=ranks, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def __iter__(self):
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.skip :]])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def validation_plates(train_fields: list[Field], val_data: Path, labels: list[str]) -> list[Field]:
    """Every labelled field of other plates (`train --val-data`: held-out weeks and compounds), checked
    to share no plate with the training data and to hold only classes the model learns."""
    fields = load_fields(val_data)
    if not fields:
        raise ValueError(f"{val_data}: no labelled fields to validate on (image table joined with MoA table is empty)")
    shared = sorted({f.plate for f in fields} & {f.plate for f in train_fields})
    if shared:
        raise ValueError(f"{val_data}: plate {shared[0]} is in the training data too; validation plates must be others")
    unknown = sorted({str(f.moa) for f in fields} - set(labels))
    if unknown:
        raise ValueError(f"{val_data}: class {unknown[0]!r} is not in the training data; the model cannot predict it")
    return fields


@dataclass
class Data:
    """The run's fields as loaders: this rank's share of every epoch's shuffle, and of validation."""

    labels: list[str]
    normalization: Normalization
    train_fields: int
    val_fields: int
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader | list


def load_data(cfg: TrainConfig, ranks: Ranks, out: Path) -> Data:
    """Labelled fields, the held-out set (stratified, NSC or NSCB; rank 0 writes split.csv), the normalisation
    fitted on training fields; each rank trains on its share of every epoch and validates every world-th field."""
    fields = load_fields(Path(cfg.data))
    if not fields:
        raise ValueError(f"{cfg.data}: no labelled fields (image table joined with MoA table is empty)")
    labels = class_names(fields)
    if cfg.val_data:
        check_val_data(cfg.split, cfg.fold)
        train_fields, val_fields = fields, validation_plates(fields, Path(cfg.val_data), labels)
    else:
        train_fields, val_fields = select_split(fields, cfg.split, cfg.fold, cfg.val_fraction, cfg.seed)
    if ranks.master:
        write_split(out / SPLIT_CSV, train_fields, val_fields)
    size = tuple(cfg.size)
    normalization = fit_normalization(read_field(f.paths, size) for f in spread_sample(train_fields, cfg.norm_fields))
    train_set = FieldDataset(
        train_fields, labels, size, normalization, augment=True, gain_jitter=cfg.gain_jitter, seed=cfg.seed
    )
    val_set = FieldDataset(val_fields, labels, size, normalization)
    sampler = EpochSampler(train_set, ranks.world, ranks.rank, seed=cfg.seed)
    loader_args = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    # The generator only seeds the loader's workers, which draw nothing: a checkpoint need not hold it.
    train_loader = DataLoader(
        train_set,
        sampler=sampler,
        drop_last=len(sampler) > cfg.batch_size,
        generator=torch.Generator().manual_seed(cfg.seed),
        **loader_args,
    )
    val_loader = (
        DataLoader(Subset(val_set, range(ranks.rank, len(val_set), ranks.world)), **loader_args) if val_fields else []
    )
    return Data(labels, normalization, len(train_fields), len(val_fields), sampler, train_loader, val_loader)

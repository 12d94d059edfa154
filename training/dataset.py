"""Fields as training examples: read, normalise, augment without changing geometry; each rank's share
of every epoch's shuffle."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from appliance.imageio import read_field
from appliance.layouts.base import Field
from appliance.normalization import Normalization


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

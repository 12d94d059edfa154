"""The multiscale CNN (M-CNN) of Godinez et al. 2017, as trained by Datta et al. 2019.

Seven columns look at the same field at seven scales: column k takes the input max-pooled by
2**k (the field halved k times by 2x2 max-pooling, which is the same thing for a field divisible
by 2**k), then runs three 5x5 "same" convolutions with ReLU. Every column is then max-pooled to
the grid of the coarsest one (16x20 for a 1024x1280 field), the columns are concatenated,
fused by a 1x1 convolution, pooled once more and classified by two linear layers.
All shapes derive from `MCNNConfig`; nothing below is written in for one input size.
One addition to the paper's network (`field_norm`, on by default): each stain of each field is
standardised first (instance normalisation), so the weights never see a field's own stain gains;
on synthetic plates it raised training accuracy after 12 epochs from 37 % to 52 % (docs/synthetic.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MCNNConfig:
    height: int = 1024
    width: int = 1280
    in_channels: int = 3
    num_classes: int = 13
    column_widths: tuple[int, ...] = (16, 16, 16, 32, 32, 32, 64)  # one column per scale
    convs_per_column: int = 3
    kernel_size: int = 5
    fused_channels: int = 1024  # the 1x1 convolution after concatenation
    final_pool: int = 2
    hidden: int = 512  # the penultimate features: the field's embedding
    field_norm: bool = True  # standardise each stain of each field first (runs saved before it: False)
    global_pool: bool = False  # average the fused grid into one vector (translation invariant) instead of
    # the paper's final max-pool and flatten, whose first linear layer has weights for every grid position

    def __post_init__(self):
        object.__setattr__(self, "column_widths", tuple(self.column_widths))
        step = self.coarsest_pool * self.final_pool
        if self.height % step or self.width % step:
            raise ValueError(
                f"input {self.height}x{self.width} must be divisible by {step} "
                f"({self.num_scales} scales and a final pool of {self.final_pool})"
            )

    @property
    def num_scales(self) -> int:
        return len(self.column_widths)

    @property
    def coarsest_pool(self) -> int:
        return 2 ** (self.num_scales - 1)

    @property
    def grid(self) -> tuple[int, int]:
        """Where all columns meet: the coarsest column's resolution."""
        return self.height // self.coarsest_pool, self.width // self.coarsest_pool

    @property
    def flat_features(self) -> int:
        if self.global_pool:
            return self.fused_channels
        gh, gw = self.grid
        return self.fused_channels * (gh // self.final_pool) * (gw // self.final_pool)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["column_widths"] = list(self.column_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MCNNConfig:
        return cls(**{"field_norm": False, **d, "column_widths": tuple(d["column_widths"])})


def halve(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pooling as the maximum of the four 2x2 phases: equal to max_pool2d(x, 2) bit for
    bit, and much faster in eager torch on a 3-channel channels_last field (whose gradient is
    never needed). An exported graph keeps MaxPool, which OpenVINO runs natively."""
    if torch.compiler.is_exporting():
        return nn.functional.max_pool2d(x, 2)
    return torch.maximum(
        torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]), torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2])
    )


def pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """x and its halvings: level k is x max-pooled by 2**k. Each level pools the previous one, so
    the full-resolution field is read once, not once per scale."""
    out = [x]
    for _ in range(levels - 1):
        out.append(halve(out[-1]))
    return out


class Column(nn.Module):
    """One scale: convolve the field at that scale, pool to the common grid."""

    def __init__(self, in_channels: int, width: int, convs: int, kernel: int, pool_out: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers.append(nn.Conv2d(in_channels if i == 0 else width, width, kernel, padding="same"))
            if i < convs - 1:
                layers.append(nn.ReLU(inplace=True))
        # The last ReLU after the pool: max-pooling commutes with ReLU (the same values, the same
        # gradients), and after it ReLU runs on up to 4096x fewer pixels.
        if pool_out > 1:
            layers.append(nn.MaxPool2d(pool_out))
        layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MCNN(nn.Module):
    def __init__(self, config: MCNNConfig):
        super().__init__()
        self.config = c = config
        # Each field's stain gains differ (lamp, staining, exposure): standardising each channel of each
        # field removes them before any weight sees the pixels.
        self.standardize = nn.InstanceNorm2d(c.in_channels, eps=1e-3) if c.field_norm else nn.Identity()
        self.columns = nn.ModuleList(
            Column(c.in_channels, width, c.convs_per_column, c.kernel_size, pool_out=c.coarsest_pool // 2**k)
            for k, width in enumerate(c.column_widths)
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(sum(c.column_widths), c.fused_channels, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1) if c.global_pool else nn.MaxPool2d(c.final_pool),
            nn.Flatten(),
            nn.Linear(c.flat_features, c.hidden),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(c.hidden, c.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, H, W) normalised fields -> (batch, hidden) embeddings."""
        scales = pyramid(self.standardize(x), len(self.columns))
        return self.fuse(torch.cat([column(field) for column, field in zip(self.columns, scales)], dim=1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

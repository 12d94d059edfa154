"""A run's options, and the recipes (optimizer and learning-rate schedule) that fill the ones not set.

    TrainConfig -> resolve_recipe -> make_optimizer (a rate scale and a weight decay per layer)
                                  -> peak_lr (scaled to the global batch) -> get_lr(step): warmup, cosine

The schedule is a pure function of the step, as nanoGPT's `get_lr(it)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn


@dataclass(frozen=True)
class Recipe:
    """Optimizer and learning-rate schedule that belong together; a TrainConfig field that is set overrides."""

    optimizer: str  # "adamw" or "sgd" (Nesterov momentum 0.9)
    lr: float  # peak rate at lr_reference_batch fields per optimizer step
    lr_scaling: str  # "linear": peak rate = lr x global batch / lr_reference_batch (Goyal et al. 2017); "none"
    lr_reference_batch: int
    weight_decay: float
    warmup_epochs: float  # linear warmup, then cosine decay to zero


RECIPES = {
    # Tuned for the demo at full resolution (batch 2): 1e-3 learns slower; 0.08 epochs = the
    # demo's 4 warmup steps of 52.
    "adamw": Recipe(
        optimizer="adamw", lr=3e-4, lr_scaling="none", lr_reference_batch=2, weight_decay=0.05, warmup_epochs=0.08
    ),
    # Datta et al. 2019: Nesterov SGD, weight decay 5e-5, 0.01 per 256 fields scaled linearly.
    "paper": Recipe(
        optimizer="sgd", lr=0.01, lr_scaling="linear", lr_reference_batch=256, weight_decay=5e-5, warmup_epochs=2.0
    ),
}
DEFAULT_RECIPE = "adamw"


@dataclass
class TrainConfig:
    data: str
    out: str
    epochs: int = 4
    batch_size: int = 4  # micro-batch: fields per forward pass on each rank
    accumulation: int = 1  # micro-batches per optimizer step; global batch = batch_size x accumulation x ranks
    size: tuple[int, int] = (1024, 1280)
    seed: int = 0
    recipe: str = DEFAULT_RECIPE  # a name in RECIPES; the six fields below, when set, override it
    optimizer: str | None = None
    lr: float | None = None
    lr_scaling: str | None = None
    lr_reference_batch: int | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    label_smoothing: float = 0.1
    global_pool: bool = False  # MCNNConfig.global_pool
    field_norm: bool = True  # the network standardises each field's stains first (MCNNConfig.field_norm)
    gain_jitter: float = 0.15  # augmentation: each stain's gain x exp(U(-j, j)), as imaging weeks differ
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    split: str = "stratified"  # or "nsc" / "nscb": hold out compound `fold` (training/splits.py)
    fold: int | None = None
    val_fraction: float = 0.2  # the stratified split's hold-out
    val_data: str | None = None  # validate on these labelled plates (all their fields) instead of a split of `data`
    target_acc: float = 0.99  # time to accuracy: the run records when validation first reaches it
    precision: str = "auto"  # "auto" (bf16 where the CPU has it), "bf16" or "fp32"
    workers: int = 1  # data-loading processes: TIFF decoding overlaps compute
    threads: int | None = None  # compute threads; default: the CPUs this process may use
    norm_fields: int = 16  # training fields sampled to fit the normalisation
    checkpoint_every: int = 100  # optimizer steps between checkpoints (RUN/checkpoints/); 0 = at epoch ends only
    keep_checkpoints: int = 2  # the newest K checkpoints are kept
    resume: bool = False  # continue the run in `out` from its latest checkpoint


def resolve_recipe(cfg: TrainConfig) -> TrainConfig:
    """A copy of `cfg` with every recipe field filled: the ones set in cfg win, the recipe gives the rest."""
    if cfg.recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {cfg.recipe!r}")
    recipe = asdict(RECIPES[cfg.recipe])
    return replace(cfg, **{k: v for k, v in recipe.items() if getattr(cfg, k) is None})


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Warmup in optimizer steps: at least one step if there is any warmup at all."""
    return max(1, round(warmup_epochs * steps_per_epoch)) if warmup_epochs > 0 else 0


def get_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup to `base` over `warmup` steps, then cosine decay to zero at `total` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def peak_lr(cfg: TrainConfig, global_batch: int) -> float:
    cfg = resolve_recipe(cfg)
    if cfg.lr_scaling == "none":
        return cfg.lr
    if cfg.lr_scaling == "linear":
        return cfg.lr * global_batch / cfg.lr_reference_batch
    raise ValueError(f"lr_scaling must be none or linear, not {cfg.lr_scaling!r}")


def lr_scale(module: nn.Module, reference_fan_in: int = 1024) -> float:
    """Layers wider than `reference_fan_in` inputs learn at 1/sqrt(fan-in) of the rate.

    The M-CNN has no normalisation layers and its 81,920-input linear layer sees only
    non-negative inputs, so one step of the same size per weight moves that layer's outputs
    far more than any other's; scaling its rate (~0.11x at full resolution) lets the whole
    network learn at the rate the convolutions tolerate.
    """
    fan_in = module.weight[0].numel()
    return min(1.0, (reference_fan_in / fan_in) ** 0.5)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer; each parameter group carries its layer's `lr_scale` (train_step applies it)."""
    # Weight decay on weights only, not on biases (nanoGPT's rule); a rate scale per layer.
    cfg = resolve_recipe(cfg)
    groups = []
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            scale = lr_scale(layer)
            groups += [
                {"params": [layer.weight], "weight_decay": cfg.weight_decay, "lr_scale": scale},
                {"params": [layer.bias], "weight_decay": 0.0, "lr_scale": scale},
            ]
    # fused=True: one kernel per step instead of a dozen passes over the 42M weights of the
    # first linear layer.
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, fused=True)
    raise ValueError(f"optimizer must be adamw or sgd, not {cfg.optimizer!r}")


def make_loss(cfg: TrainConfig) -> nn.Module:
    """The training loss: cross-entropy with the config's label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

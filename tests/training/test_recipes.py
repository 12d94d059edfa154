from dataclasses import asdict, replace

import pytest
import torch

from training.model import MCNN, MCNNConfig
from training.recipes import (
    DEFAULT_RECIPE,
    RECIPES,
    TrainConfig,
    get_lr,
    lr_scale,
    make_loss,
    make_optimizer,
    peak_lr,
    resolve_recipe,
    warmup_steps,
)

TINY = (128, 128)


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [get_lr(step, total=20, warmup=4, base=1.0) for step in range(21)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[20] == pytest.approx(0.0)
    assert get_lr(12, total=20, warmup=4, base=1.0) == pytest.approx(0.5)  # half-way through the decay: cos(pi/2)


def test_only_the_wide_linear_layer_learns_slower_at_full_resolution():
    with torch.device("meta"):  # shapes only: no 42 M weights to initialise
        model = MCNN(MCNNConfig())
    assert lr_scale(model.fuse[4]) == pytest.approx((1024 / 81_920) ** 0.5)
    assert lr_scale(model.head) == 1.0 and lr_scale(model.columns[0].body[0]) == 1.0


def test_linear_lr_scaling_is_relative_to_the_reference_batch():
    assert peak_lr(TrainConfig(data="d", out="o", lr=3e-4), global_batch=16) == 3e-4  # off by default
    scaled = TrainConfig(data="d", out="o", lr=3e-4, lr_scaling="linear", lr_reference_batch=2)
    assert peak_lr(scaled, global_batch=16) == pytest.approx(2.4e-3)
    with pytest.raises(ValueError, match="none or linear"):
        peak_lr(TrainConfig(data="d", out="o", lr_scaling="sqrt"), global_batch=16)


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_recipe_fills_the_options_not_set_and_the_set_ones_win(name):
    recipe = asdict(RECIPES[name])
    resolved = resolve_recipe(TrainConfig(data="d", out="o", recipe=name))
    assert {k: getattr(resolved, k) for k in recipe} == recipe
    tuned = resolve_recipe(TrainConfig(data="d", out="o", recipe=name, lr=0.123, warmup_epochs=0.5))
    assert (tuned.lr, tuned.warmup_epochs) == (0.123, 0.5)
    assert {k: getattr(tuned, k) for k in recipe if k not in ("lr", "warmup_epochs")} == {
        k: v for k, v in recipe.items() if k not in ("lr", "warmup_epochs")
    }
    assert resolve_recipe(resolved) == resolved  # resolving twice changes nothing


def test_the_default_recipe_and_an_unknown_one():
    assert resolve_recipe(TrainConfig(data="d", out="o")) == resolve_recipe(
        TrainConfig(data="d", out="o", recipe=DEFAULT_RECIPE)
    )
    with pytest.raises(ValueError, match="recipe must be one of adamw, paper"):
        resolve_recipe(TrainConfig(data="d", out="o", recipe="lamb"))


def test_the_paper_recipe_scales_its_rate_with_the_global_batch():
    paper = resolve_recipe(TrainConfig(data="d", out="o", recipe="paper"))
    assert peak_lr(paper, 2 * paper.lr_reference_batch) == pytest.approx(2 * paper.lr)


def test_the_optimizer_decays_weights_only_and_carries_each_layers_rate_scale():
    model = MCNN(MCNNConfig(height=TINY[0], width=TINY[1]))  # the fused optimizers refuse meta tensors
    cfg = TrainConfig(data="d", out="o", recipe="paper", weight_decay=1e-3)
    optimizer = make_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in optimizer.param_groups)
    groups = {id(g["params"][0]): g for g in optimizer.param_groups}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))  # every one
    for layer in (model.columns[0].body[0], model.fuse[4], model.head):
        assert groups[id(layer.weight)]["weight_decay"] == 1e-3 and groups[id(layer.bias)]["weight_decay"] == 0.0
        assert groups[id(layer.weight)]["lr_scale"] == groups[id(layer.bias)]["lr_scale"] == lr_scale(layer)
    adamw = make_optimizer(model, replace(cfg, optimizer="adamw"))
    assert isinstance(adamw, torch.optim.AdamW)
    with pytest.raises(ValueError, match="adamw or sgd"):
        make_optimizer(model, replace(cfg, optimizer="lamb"))


def test_warmup_is_given_in_epochs_and_any_warmup_is_at_least_one_step():
    assert warmup_steps(2.0, steps_per_epoch=41) == 82
    assert warmup_steps(0.001, steps_per_epoch=10) == 1 and warmup_steps(0.0, steps_per_epoch=10) == 0


def test_the_loss_smooths_labels_as_configured():
    logits, target = torch.tensor([[10.0, 0.0]]), torch.tensor([0])
    plain = make_loss(TrainConfig(data="d", out="o", label_smoothing=0.0))(logits, target)
    smoothed = make_loss(TrainConfig(data="d", out="o", label_smoothing=0.2))(logits, target)
    assert smoothed > plain  # smoothing penalises a confident right answer

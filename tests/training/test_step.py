"""One optimizer step and one evaluation pass: what train() runs, and the training benchmarks with it."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import training.process as process_module
import training.step as step_module
from training.model import MCNN, MCNNConfig
from training.recipes import TrainConfig, lr_scale, make_loss, make_optimizer
from training.step import as_model_input, evaluate, resolve_precision, train_step

TINY = (128, 128)
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def tiny(seed: int = 0) -> MCNN:
    torch.manual_seed(seed)
    return MCNN(MCNNConfig(height=TINY[0], width=TINY[1], num_classes=3)).to(memory_format=torch.channels_last)


def fields(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *TINY, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def sgd(model: MCNN) -> torch.optim.Optimizer:
    return make_optimizer(model, TrainConfig(data="d", out="o", optimizer="sgd", lr=0.05, weight_decay=0.0))


def test_accumulated_micro_batches_step_as_one_batch():
    """Two micro-batches of 2 accumulated: the step of one batch of 4 (fp32 and SGD keep it linear)."""
    x, y = fields(4)
    loss_fn = make_loss(TrainConfig(data="d", out="o"))
    big, accumulated = tiny(), tiny()
    start = {k: v.clone() for k, v in big.state_dict().items()}
    one = train_step(big, sgd(big), loss_fn, iter([(x, y)]), lr=0.05)
    two = train_step(
        accumulated, sgd(accumulated), loss_fn, iter([(x[:2], y[:2]), (x[2:], y[2:])]), lr=0.05, accumulation=2
    )
    assert (two.seen, two.correct) == (one.seen, one.correct) and one.seen == 4
    assert two.loss == pytest.approx(one.loss, abs=1e-6) and two.loss_sum == pytest.approx(4 * one.loss, abs=1e-5)
    for name, weight in big.state_dict().items():
        assert (weight - start[name]).abs().max() > 1e-5, name  # every layer moved
        torch.testing.assert_close(accumulated.state_dict()[name], weight, rtol=0, atol=1e-6, msg=name)


def test_the_step_takes_exactly_its_micro_batches_and_sets_each_layers_rate():
    model = tiny()
    optimizer = sgd(model)
    batches = iter([fields(2, seed) for seed in range(3)])
    stats = train_step(model, optimizer, make_loss(TrainConfig(data="d", out="o")), batches, lr=0.01, accumulation=2)
    assert stats.seen == 4 and len(list(batches)) == 1  # the third micro-batch is the next step's
    rates = {id(g["params"][0]): g["lr"] for g in optimizer.param_groups}
    assert rates[id(model.head.weight)] == pytest.approx(0.01 * lr_scale(model.head))
    assert rates[id(model.fuse[4].weight)] == pytest.approx(0.01 * lr_scale(model.fuse[4]))
    assert all(p.grad is None for p in model.parameters())  # zeroed for the next step


def test_the_counts_are_the_models_answers_on_the_step_fields():
    model = tiny()
    x, y = fields(4)
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).sum().item()
    stats = train_step(model, sgd(model), make_loss(TrainConfig(data="d", out="o")), iter([(x, y)]), lr=0.0)
    assert stats.correct == expected and stats.data_wait >= 0


def test_a_non_finite_loss_stops_before_the_weights_change():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = fields(2)
    x[0, 0, 0, 0] = math.nan
    seen = []

    def stop(loss):
        seen.append(loss)
        raise FloatingPointError("stopped by the hook")

    loss_fn = make_loss(TrainConfig(data="d", out="o"))
    with pytest.raises(FloatingPointError, match="stopped by the hook"):
        train_step(model, sgd(model), loss_fn, iter([(x, y)]), lr=0.05, on_non_finite=stop)
    assert len(seen) == 1 and math.isnan(seen[0])
    with pytest.raises(FloatingPointError, match="the loss is nan"):  # without a hook
        train_step(model, sgd(model), loss_fn, iter([(x, y)]), lr=0.05)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_evaluate_sums_the_loss_and_counts_over_the_loader():
    model = tiny().eval()
    batches = [fields(3, 1), fields(2, 2)]
    loss_sum, correct, n = evaluate(model, batches, "fp32")
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        logits = model(x)
    assert n == 5 and correct == (logits.argmax(1) == y).sum().item()
    assert loss_sum == pytest.approx(torch.nn.functional.cross_entropy(logits, y, reduction="sum").item(), rel=1e-5)


def test_model_input_is_channels_last_and_cast_once_for_bf16():
    x = torch.randn(1, 3, 8, 8)
    assert as_model_input(x, "bf16").dtype == torch.bfloat16
    assert as_model_input(x, "fp32").is_contiguous(memory_format=torch.channels_last)
    ready = as_model_input(x, "bf16")
    assert as_model_input(ready, "bf16") is ready  # the step's cast of a cast batch costs nothing
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        resolve_precision("fp16")


# --- the training benchmarks time train's own step ---------------------------------------------


def benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def steps(monkeypatch):
    """Every train_step call (its options), the process-wide settings a benchmark child makes left alone."""
    calls = []

    def spy(model, optimizer, loss_fn, batches, lr, **options):
        calls.append({"loss_fn": loss_fn, "lr": lr, **options})
        return real(model, optimizer, loss_fn, batches, lr, **options)

    real = step_module.train_step
    monkeypatch.setattr(step_module, "train_step", spy)
    monkeypatch.setattr(process_module, "keep_freed_memory", lambda: "untouched")
    monkeypatch.setattr(process_module, "set_threads", lambda threads=None: torch.get_num_threads())
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: None)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return calls


@pytest.mark.parametrize(
    "name, run, expected_steps",
    [
        ("train_throughput", lambda b: b.child("naive", TINY, 2, 1, 1), 3),  # counted, timed, profiled
        ("train_memory", lambda b: b.child("fp32", TINY, 2, 2), 2),
        ("ddp_scaling", lambda b: b.child(TINY, 1, 2, 1, 1), 2),  # 1 x 2 accumulated, warm-up and timed
    ],
)
def test_the_training_benchmarks_run_trains_own_step(steps, name, run, expected_steps):
    result = run(benchmark(name))
    assert len(steps) == expected_steps
    smoothing = TrainConfig.label_smoothing
    assert all(call["loss_fn"].label_smoothing == smoothing for call in steps)  # train's loss, not a copy of it
    if name == "ddp_scaling":
        assert all(call["accumulation"] == 2 for call in steps) and result["accumulation"] == 2

"""Starting training: plan, folds, exit codes, torchrun's command line, a rank's entry point (no training here)."""

import inspect
import json
from dataclasses import asdict, fields

import pytest
from rich.console import Console

import training.launch as launch_module
from appliance.console import EXIT_NOTHING_RAN, EXIT_OK, EXIT_SOME_FAILED
from appliance.layouts.base import Field
from training.checkpoint import ResumeError
from training.launch import (
    LaunchOptions,
    OptionError,
    hooks_from_environment,
    main,
    torchrun_command,
    torchrun_layout,
    train_folds,
)
from training.recipes import TrainConfig

QUIET = Console(quiet=True)
TORCHRUN = ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "TORCHELASTIC_RESTART_COUNT", "MCNN_TEST_KILL_AT")


@pytest.fixture(autouse=True)
def not_under_torchrun(monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)


def labelled(compound: str, moa: str, week: str) -> Field:
    return Field(
        plate=f"{week}_1", well="B02", site=1, paths=(), compound=compound, concentration=1.0, moa=moa, week=week
    )


FIELDS = [
    labelled("a1", "A", "Week1"),
    labelled("a2", "A", "Week2"),
    labelled("b1", "B", "Week1"),
    labelled("b2", "B", "Week2"),
    labelled("DMSO", "DMSO", "Week1"),
]  # 4 nsc folds


@pytest.fixture
def launched(monkeypatch):
    """launch() replaced: the runs train_folds starts, and what each returns or raises."""
    runs, outcomes = [], {}

    def fake_launch(cfg, plan, in_process, console, options):
        runs.append({"cfg": cfg, "plan": plan, "in_process": in_process})
        outcome = outcomes.get(cfg.fold, 0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(launch_module, "launch", fake_launch)
    monkeypatch.setattr(launch_module, "load_fields", lambda data: FIELDS)
    return runs, outcomes


def config(tmp_path, **options) -> TrainConfig:
    return TrainConfig(
        **{
            "data": str(tmp_path / "data"),
            "out": str(tmp_path / "run"),
            "size": (128, 128),
            "precision": "fp32",
            **options,
        }
    )


def test_every_fold_trains_in_its_folder_with_the_plans_batches(launched, tmp_path):
    runs, _ = launched
    code = train_folds(
        config(tmp_path, split="nsc", batch_size=2), LaunchOptions(global_batch=8, memory_gb=64), "all", QUIET
    )
    assert code == EXIT_OK
    assert [r["cfg"].fold for r in runs] == [0, 1, 2, 3]
    assert [r["cfg"].out for r in runs] == [str(tmp_path / "run" / f"fold-{k}") for k in range(4)]
    assert {(r["cfg"].batch_size, r["cfg"].accumulation) for r in runs} == {(2, 4)}  # --batch-size caps the plan
    assert all(r["in_process"] and r["cfg"].optimizer == "adamw" for r in runs)  # one process; the recipe filled


def test_a_failing_fold_is_reported_and_the_others_go_on(launched, tmp_path):
    runs, outcomes = launched
    outcomes[1] = FloatingPointError("the loss is nan at step 3")
    code = train_folds(config(tmp_path, split="nsc"), LaunchOptions(memory_gb=64), "all", QUIET)
    assert code == EXIT_SOME_FAILED and len(runs) == 4


def test_a_single_run_that_cannot_resume_trained_nothing(launched, tmp_path):
    _, outcomes = launched
    outcomes[None] = ResumeError("--resume: no checkpoint")
    assert train_folds(config(tmp_path), LaunchOptions(memory_gb=64), None, QUIET) == EXIT_NOTHING_RAN


def test_what_cannot_start_raises_before_any_run(launched, tmp_path, monkeypatch):
    runs, _ = launched
    with pytest.raises(OptionError, match="needs --nproc-per-node"):
        train_folds(config(tmp_path), LaunchOptions(memory_gb=64, max_restarts=1), None, QUIET)
    with pytest.raises(ValueError, match="recipe must be one of"):
        train_folds(config(tmp_path, recipe="lamb"), LaunchOptions(memory_gb=64), None, QUIET)
    with pytest.raises(ValueError, match="no plan fits"):
        train_folds(config(tmp_path, size=(1024, 1280)), LaunchOptions(memory_gb=0.5), None, QUIET)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one fold per command"):
        train_folds(config(tmp_path, split="nsc"), LaunchOptions(memory_gb=64), "all", QUIET)
    assert not runs


def test_under_a_torchrun_you_launched_the_plan_takes_its_layout(launched, tmp_path, monkeypatch):
    runs, _ = launched
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert torchrun_layout(LaunchOptions(nproc_per_node=8)) == (True, 2, 2)
    train_folds(config(tmp_path), LaunchOptions(memory_gb=64, global_batch=8), None, QUIET)
    [run] = runs
    assert run["in_process"] and (run["plan"].ranks, run["plan"].nodes, run["plan"].micro_batch) == (2, 2, 2)
    assert torchrun_layout(LaunchOptions(nproc_per_node=3, nnodes=2)) == (True, 2, 2)
    monkeypatch.delenv("WORLD_SIZE")
    assert torchrun_layout(LaunchOptions(nproc_per_node=3, nnodes=2)) == (False, 3, 2)


def test_every_train_option_is_a_field_of_the_config_or_the_launch_options():
    """`train` builds TrainConfig and LaunchOptions from its options by name: one named otherwise would be lost."""
    from training.cli import train as train_command

    options = set(inspect.signature(train_command).parameters) - {"fold"}  # fold: chosen per run
    config, launch = {f.name for f in fields(TrainConfig)}, {f.name for f in fields(LaunchOptions)}
    assert options <= config | launch and not config & launch


def test_several_nodes_need_a_rendezvous_endpoint():
    cfg = TrainConfig(data="d", out="o")
    with pytest.raises(ValueError, match="HOST:PORT"):
        torchrun_command(cfg, LaunchOptions(nproc_per_node=2, nnodes=2))
    command = torchrun_command(cfg, LaunchOptions(4, nnodes=2, rdzv_endpoint="node1:29500", max_restarts=3))
    assert command[command.index("--rdzv-endpoint") + 1] == "node1:29500" and "--standalone" not in command
    assert command[command.index("--max-restarts") + 1] == "3"


def test_the_ranks_torchrun_starts_train_the_config_and_plan_given(monkeypatch):
    """torchrun_command's last argument is what main(), each rank's entry point, trains."""
    cfg = TrainConfig(data="d", out="o", size=(128, 256), batch_size=2, accumulation=3, lr=0.01)
    command = torchrun_command(cfg, LaunchOptions(nproc_per_node=2), plan={"ranks": 2})
    assert command[command.index("-m", command.index("--max-restarts")) + 1] == "training.launch"
    trained = []
    monkeypatch.setattr(launch_module, "train", lambda cfg, console, plan, after_step: trained.append((cfg, plan)))
    assert main([command[-1]]) == 0
    [(received, plan)] = trained
    assert {**asdict(received), "size": tuple(received.size)} == asdict(cfg) and plan == {"ranks": 2}

    def refuse(*args, **kwargs):
        raise ResumeError("cannot resume o")

    monkeypatch.setattr(launch_module, "train", refuse)
    assert main([json.dumps({"config": asdict(cfg)})]) == 1  # a clear line and exit 1, not a traceback


@pytest.mark.parametrize(
    "environment, hooks",
    [
        ({}, 0),
        ({"MCNN_TEST_KILL_AT": "0:3"}, 1),
        ({"MCNN_TEST_KILL_AT": "1:3", "RANK": "1"}, 1),
        ({"MCNN_TEST_KILL_AT": "1:3", "RANK": "0"}, 0),  # another rank's
        ({"MCNN_TEST_KILL_AT": "0:3", "TORCHELASTIC_RESTART_COUNT": "1"}, 0),  # restarted: the kill is not repeated
    ],
)
def test_the_kill_hook_is_installed_only_in_the_rank_and_attempt_it_names(monkeypatch, environment, hooks):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    installed = hooks_from_environment()
    assert len(installed) == hooks
    for hook in installed:
        hook(2)  # another step: nothing happens (step 3 would SIGKILL this process: test_resume does that)


def test_a_run_that_never_trained_leaves_no_half_folder(monkeypatch, tmp_path):
    """train wrote the folder (plan.json, split.csv), then stopped before any step: the folder goes."""

    def fails_after_writing(cfg, plan, in_process, console, options):
        out = tmp_path / "run"
        out.mkdir()
        (out / "split.csv").write_text("plate,well\n")
        raise ValueError("no training field of class X")

    monkeypatch.setattr(launch_module, "launch", fails_after_writing)
    monkeypatch.setattr(launch_module, "load_fields", lambda data: FIELDS)
    assert train_folds(config(tmp_path), LaunchOptions(memory_gb=64), None, QUIET) == EXIT_NOTHING_RAN
    assert not (tmp_path / "run").exists()


def test_the_node_owning_the_endpoint_hosts_the_rendezvous():
    """torchrun guesses the store's host from the hostname; the node that can bind the endpoint's address
    hosts it (is_host=1), every node names its address on the route to it (--local-addr)."""
    import socket

    cfg = TrainConfig(data="d", out="o")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as route:
        route.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
        own = route.getsockname()[0]
    if own.startswith("127."):
        pytest.skip("no non-loopback address on this machine")
    command = torchrun_command(cfg, LaunchOptions(1, nnodes="2", rdzv_endpoint=f"{own}:0"))
    assert command[command.index("--local-addr") + 1] == own
    assert command[command.index("--rdzv-conf") + 1] == "is_host=1"
    elsewhere = torchrun_command(cfg, LaunchOptions(1, nnodes="1:3", rdzv_endpoint="192.0.2.1:29500"))
    assert "--rdzv-conf" not in elsewhere and elsewhere[elsewhere.index("--local-addr") + 1] == own
    assert elsewhere[elsewhere.index("--nnodes") + 1] == "1:3"
    loopback = torchrun_command(cfg, LaunchOptions(2, nnodes="2", rdzv_endpoint="127.0.0.1:29500"))
    assert "--rdzv-conf" not in loopback and "--local-addr" not in loopback  # torchrun's own guess
    with socket.socket() as taken:  # a store listening already: a second "node" on this machine
        taken.bind((own, 0))
        taken.listen()
        port = taken.getsockname()[1]
        second = torchrun_command(cfg, LaunchOptions(1, nnodes="2", rdzv_endpoint=f"{own}:{port}"))
    assert "--rdzv-conf" not in second


def test_nnodes_takes_a_count_or_torchruns_elastic_range():
    assert LaunchOptions(nnodes="2").node_range == (2, 2) and LaunchOptions(nnodes="1:4").node_range == (1, 4)
    assert torchrun_layout(LaunchOptions(nproc_per_node=2, nnodes="1:3")) == (False, 2, 3)  # planned for the most
    for bad in ("0", "3:2", "two", "1:2:3"):
        with pytest.raises(OptionError, match="--nnodes"):
            torchrun_layout(LaunchOptions(nnodes=bad))


def test_a_lost_peer_is_named_from_gloos_error():
    from training.launch import lost_peer

    gloo = "[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [10.231.7.2]:44724: Connection"
    assert lost_peer(gloo + " reset by peer") == "10.231.7.2"
    assert lost_peer("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out") is None
    assert lost_peer("some other RuntimeError [10.0.0.1]:5") is None

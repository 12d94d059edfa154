"""Starting training: the plan, the folds, one process or torchrun's ranks, and a rank's entry point.

    `mcnn-appliance train` -> train_folds(cfg, options, fold) -> plan_for (training/plan.py), planned_runs,
        then per run: launch(cfg, plan, ..., options)
            one process:  train(cfg)
            N ranks:      torchrun ... -m training.launch '{"config": {...}, "plan": {...}}'  (main() in each)

Under a torchrun you start yourself (`torchrun ... --no-python mcnn-appliance train ...`) every rank
runs the command: it plans with torchrun's layout and trains in its own process.

The two entry points of a training process (main() and launch's in-process run) read the hooks tests
install through the environment (MCNN_TEST_KILL_AT); the loop itself knows no test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from appliance.console import EXIT_NOTHING_RAN, EXIT_OK, EXIT_SOME_FAILED, error
from appliance.layouts.bbbc021 import load_fields
from training.checkpoint import ResumeError, list_checkpoints
from training.distributed import restarted
from training.evaluate import EVALUATION_DIR
from training.plan import Plan, available_memory_gb, field_gb, model_parameters, plan, usable_cores
from training.recipes import TrainConfig, resolve_recipe
from training.run_folder import check_run_folders, data_field_size, delete_runs
from training.splits import Fold, check_val_data, chosen_folds
from training.step import resolve_precision
from training.train import AfterStep, train


class OptionError(ValueError):
    """Options that do not go together; the command shows it as a bad parameter."""


@dataclass(frozen=True)
class LaunchOptions:
    """Where `train` runs: ranks per node and nodes, the batch over all of them, a node's memory, restarts."""

    nproc_per_node: int = 1
    nnodes: int | str = 1  # N, or torchrun's elastic range MIN:MAX
    rdzv_endpoint: str | None = None  # HOST:PORT, with nnodes > 1
    global_batch: int | None = None  # default: batch size x accumulation x ranks
    memory_gb: float | None = None  # default: available RAM minus 10 %
    max_restarts: int = 0  # torchrun restarts the ranks after a failure
    overwrite: bool = False  # delete the run already in --out (training/run_folder.py)

    @property
    def node_range(self) -> tuple[int, int]:
        """(fewest, most) nodes: --nnodes N is (N, N); MIN:MAX lets torchrun go on with fewer after a loss."""
        text = str(self.nnodes)
        try:
            low, high = (int(v) for v in text.split(":")) if ":" in text else (int(text), int(text))
        except ValueError:
            raise OptionError(f"--nnodes {text!r}: expected N or MIN:MAX (e.g. 1:2)") from None
        if not 1 <= low <= high:
            raise OptionError(f"--nnodes {text!r}: expected 1 <= MIN <= MAX")
        return low, high


def torchrun_layout(options: LaunchOptions) -> tuple[bool, int, int]:
    """(launched, ranks per node, nodes): torchrun's layout when this process is already one of its ranks."""
    launched = "WORLD_SIZE" in os.environ
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched else options.nproc_per_node
    nodes = int(os.environ["WORLD_SIZE"]) // ranks if launched else options.node_range[1]
    return launched, ranks, nodes


def plan_for(
    cfg: TrainConfig, ranks: int, nodes: int = 1, global_batch: int | None = None, memory_gb: float | None = None
) -> Plan:
    """The plan for cfg on this machine (cores, memory): cfg.batch_size caps the micro-batch; the global
    batch defaults to batch size x accumulation x ranks x nodes."""
    size = tuple(cfg.size)
    return plan(
        usable_cores(),
        memory_gb or available_memory_gb(),
        global_batch or cfg.batch_size * cfg.accumulation * ranks * nodes,
        field_gb(size, resolve_precision(cfg.precision)),
        ranks,
        nodes=nodes,
        max_micro_batch=cfg.batch_size,
        parameters=model_parameters(size),
    )


def planned_runs(
    data: Path, out: Path, split: str, fold: str | None
) -> tuple[list[tuple[Fold | None, Path]], list[Fold]]:
    """([(Fold or None, run folder)] to train, [Fold skipped]); with --fold all, OUT/fold-K per fold."""
    chosen, skipped = chosen_folds(lambda: load_fields(data), split, fold)
    if fold == "all":
        return [(f, out / f"fold-{f.index}") for f in chosen], skipped
    return [(f, out) for f in chosen], skipped


def train_folds(cfg: TrainConfig, options: LaunchOptions, fold: str | None, console: Console) -> int:
    """Plan, then train cfg once, or once per chosen fold (`fold`: K or all); returns the exit code.

    What stops everything before any training raises: ValueError (a plan that does not fit, a split,
    a recipe or a precision that does not exist), OptionError. A run that fails is reported and the
    other folds go on: exit 2 when nothing could train, 1 when a run failed or stopped.
    """
    cfg = resolve_recipe(cfg)  # a bad recipe name stops here, before torchrun starts ranks
    if cfg.val_data:
        check_val_data(cfg.split, fold)
    launched, ranks, nodes = torchrun_layout(options)
    data = Path(cfg.data).resolve()  # run.json records absolute paths: a run read from anywhere finds its data
    size = data_field_size(load_fields(data), cfg.size, data)  # every field's header, before anything is written
    cfg = replace(cfg, data=str(data), out=str(Path(cfg.out).resolve()), size=size)
    the_plan = plan_for(cfg, ranks, nodes, options.global_batch, options.memory_gb)
    runs, skipped_folds = planned_runs(Path(cfg.data), Path(cfg.out), cfg.split, fold)
    if launched and len(runs) > 1:
        raise ValueError("--fold all under a torchrun launch you started: launch one fold per command")
    if options.max_restarts and (launched or ranks * nodes == 1):
        raise OptionError(
            "--max-restarts is torchrun's: it needs --nproc-per-node or --nnodes above 1 "
            "(under a torchrun you launch, give torchrun --max-restarts)"
        )
    master = os.environ.get("RANK", "0") == "0"
    doomed = []  # runs --overwrite replaces; a torchrun restart continues its own run
    if master and not restarted():
        doomed = check_run_folders([run_out for _, run_out in runs], cfg.resume, options.overwrite)
        pooled = Path(cfg.out) / EVALUATION_DIR  # `evaluate` of all folds writes beside them
        if fold == "all" and doomed and pooled.is_dir():
            doomed.append(pooled)
    delete_runs(doomed)
    if master:
        console.print(the_plan.describe())
        for skipped in skipped_folds:
            console.print(f"[yellow]fold {skipped.index} skipped:[/] {escape(skipped.problem)}")
    code = EXIT_OK
    for held_out, run_out in runs:
        if held_out and master:
            console.print(
                f"{cfg.split} fold {held_out.index}: {held_out.compound} held out"
                + (
                    f"; weeks {', '.join(held_out.excluded_weeks)} left out of training"
                    if held_out.excluded_weeks
                    else ""
                )
            )
        run_cfg = replace(
            cfg,
            out=str(run_out),
            batch_size=the_plan.micro_batch,
            accumulation=the_plan.accumulation,
            fold=held_out.index if held_out else None,
        )
        new_folder = not run_out.exists()
        try:
            returncode = launch(run_cfg, the_plan, launched or ranks * nodes == 1, console, options)
        except ValueError as exc:  # ResumeError (nothing trained), a bad rendezvous, a bad config
            error(exc)
            returncode = EXIT_NOTHING_RAN
            if master and new_folder and run_out.is_dir() and not list_checkpoints(run_out):
                shutil.rmtree(run_out)  # no half run folder left behind by a run that never trained
        except (FloatingPointError, OSError) as exc:  # a non-finite loss stopped the run (its checkpoints stay)
            error(exc)
            returncode = EXIT_SOME_FAILED
        if returncode and len(runs) > 1:  # one fold failing does not stop the others
            console.print(f"[red]training {escape(str(run_out))} failed[/] (exit code {returncode})")
            returncode = EXIT_SOME_FAILED
        code = max(code, returncode)
    return code


def launch(cfg: TrainConfig, plan: Plan, in_process: bool, console: Console, options: LaunchOptions) -> int:
    """Train cfg in this process (one process, or one rank of a torchrun you started), or launch torchrun
    with the options' ranks and nodes (the plan's); returns the exit code. ResumeError and
    FloatingPointError come through."""
    if in_process:
        train(cfg, console=console, plan=plan.to_dict(), after_step=hooks_from_environment())
        return 0
    # torchrun would set OMP_NUM_THREADS=1; each rank sets its threads from its own cores anyway.
    env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads_per_rank)}
    return subprocess.run(torchrun_command(cfg, options, plan.to_dict()), env=env).returncode


def torchrun(options: LaunchOptions) -> list[str]:
    """torchrun starting options.nproc_per_node ranks on this node (of options.nnodes); after a failure it
    restarts them up to options.max_restarts times. The program and its arguments follow."""
    fewest, most = options.node_range
    if most > 1 and not options.rdzv_endpoint:
        raise ValueError("training on several nodes needs a rendezvous endpoint HOST:PORT (any node's address)")
    rendezvous = (
        ["--nnodes", f"{fewest}:{most}" if fewest < most else str(most), "--rdzv-backend", "c10d"]
        + ["--rdzv-endpoint", options.rdzv_endpoint, *hosting(options.rdzv_endpoint)]
        if most > 1
        else ["--standalone"]
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(options.nproc_per_node),
        *rendezvous,
        "--max-restarts",
        str(options.max_restarts),
    ]


def hosting(endpoint: str) -> list[str]:
    """This node's rendezvous options: its address on the route to the endpoint (--local-addr), and
    `--rdzv-conf is_host=1` on the node that owns the endpoint's address.

    torchrun guesses both from the hostname: which node hosts the rendezvous store (the one whose
    hostname resolves to the endpoint) and the address the other nodes reach the first rank's store
    at (its FQDN). On a cluster the endpoint is often another network's address (InfiniBand, a cluster
    network) than the hostname's, so no node hosts the store and all time out, or the ranks dial the
    wrong network (or "localhost") and wait forever. A node that can bind the endpoint's address holds
    it, so it hosts; when the port is taken (a second "node" on one machine) or the endpoint is
    loopback, torchrun's own guesses stay."""
    host, _, port = endpoint.rpartition(":")
    try:
        [(family, _, _, _, address), *_] = socket.getaddrinfo(host.strip("[]"), int(port), proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        return []  # torchrun names the endpoint it cannot use
    if ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
        return []
    with socket.socket(family, socket.SOCK_DGRAM) as route:
        route.connect(address)  # UDP: no packet sent, the kernel picks the interface and source address
        options = ["--local-addr", route.getsockname()[0]]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TCPStore: a closed store's port is free
        try:
            probe.bind(address)  # EADDRNOTAVAIL: not this machine's address; EADDRINUSE: hosted already
        except OSError:
            return options
    return [*options, "--rdzv-conf", "is_host=1"]


def torchrun_command(cfg: TrainConfig, options: LaunchOptions, plan: dict | None = None) -> list[str]:
    """The command that runs `train(cfg)` as torchrun's ranks (main() in each); restarted ranks resume
    from the last checkpoint."""
    return [*torchrun(options), "-m", "training.launch", json.dumps({"config": asdict(cfg), "plan": plan})]


def hooks_from_environment() -> list[AfterStep]:
    """MCNN_TEST_KILL_AT=RANK:STEP: that rank kills itself with SIGKILL (no clean-up, as the OOM killer would)
    after that optimizer step, on torchrun's first attempt only. The tests of resuming and of elastic
    restarts use it; without the variable there is no hook."""
    target = os.environ.get("MCNN_TEST_KILL_AT")
    if not target or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return []
    rank, step = target.split(":")
    if rank != os.environ.get("RANK", "0"):
        return []

    def kill_after(done: int) -> None:
        if done == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

    return [kill_after]


def main(argv: list[str] | None = None) -> int:
    """One rank under torchrun (or one process): the argument is {"config": {TrainConfig fields}, "plan": {}}."""
    request = json.loads((sys.argv[1:] if argv is None else argv)[0])
    try:
        train(
            TrainConfig(**request["config"]),
            console=Console(stderr=True),
            plan=request.get("plan"),
            after_step=hooks_from_environment(),
        )
    except (ResumeError, FloatingPointError) as exc:  # a clear line, not a traceback per rank
        error(exc)
        return 1
    except RuntimeError as exc:  # gloo's DistBackendError: another node's rank went away mid-collective
        peer = lost_peer(str(exc))
        if peer is None:
            raise
        error(
            f"lost contact with {peer}: the node at that address stopped or the network to it failed "
            f"({str(exc).splitlines()[0]}). Run the same command with --resume on every node to go on from "
            "the last checkpoint; with --nnodes MIN:MAX and --max-restarts the other nodes go on without it."
        )
        return 1
    return 0


def lost_peer(message: str) -> str | None:
    """The address of the peer a gloo error names ("Read error [10.0.0.2]:44724: Connection reset by peer")."""
    found = GLOO_PEER.search(message) if "gloo" in message else None
    return found.group(1) if found else None


GLOO_PEER = re.compile(r"\[([0-9A-Fa-f.:]+)\]:\d+")


if __name__ == "__main__":
    sys.exit(main())

"""Two hosts over a real network stack: two network namespaces joined by a veth pair, one
`mcnn-appliance train --nnodes 2` per namespace (ip netns exec), the rendezvous on the first one's
address. The hostname resolves to neither namespace's address, as on a cluster whose hostnames are on
the management network: the node owning the endpoint must host the rendezvous itself.

Needs root and iproute2 (.ci/run installs it; CI runs as root): missing in CI fails, elsewhere skips.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import command_line

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "mcnn-appliance"
PORT = 29517
TIMEOUT = 600  # seconds any one training command may take on a busy 2-core machine


class Host:
    """A network namespace with one end of the veth pair, named and addressed."""

    def __init__(self, namespace: str, link: str, address: str):
        self.namespace, self.link, self.address = namespace, link, address

    def run(self, arguments: list[str], **env) -> subprocess.Popen:
        """`mcnn-appliance ARGUMENTS` in this namespace, gloo on the veth; its output in the Popen's pipes."""
        variables = [f"{k}={v}" for k, v in {**env, "GLOO_SOCKET_IFNAME": self.link}.items()]
        command = ["ip", "netns", "exec", self.namespace, "env", *variables, str(SCRIPT), *arguments]
        return subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def pids(self) -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True)
        return [int(p) for p in listed.stdout.split()]

    def lose(self) -> None:
        """Every process in the namespace SIGKILLed, as a host that loses power (the link stays up)."""
        for _ in range(20):  # until none is left (torchrun's agent could be starting a rank)
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)


def environment() -> dict:
    """This checkout first on the path; one thread per rank, as in the single-host reference."""
    return {**os.environ, "PYTHONPATH": str(REPO), "MCNN_THREADS": "1"}


def ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, text=True)


@pytest.fixture
def hosts():
    """Hosts A (10.231.7.1) and B (10.231.7.2) on one veth pair; removed whatever happens."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        why = "needs root and iproute2 (ip netns)"
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    tag = os.getpid() % 100000
    a = Host(f"mcnn-{tag}-a", f"mc{tag}a", "10.231.7.1")
    b = Host(f"mcnn-{tag}-b", f"mc{tag}b", "10.231.7.2")
    created = []
    try:
        for host in (a, b):
            ip("netns", "add", host.namespace)
            created.append(host)
        ip("link", "add", a.link, "netns", a.namespace, "type", "veth", "peer", "name", b.link, "netns", b.namespace)
        for host in (a, b):
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.link)
            ip("-n", host.namespace, "link", "set", host.link, "up")
            ip("-n", host.namespace, "link", "set", "lo", "up")
        yield a, b
    finally:
        for host in created:
            host.lose()
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)  # takes the veth with it
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(host.namespace in left for host in (a, b)), left


def train_options(data: Path, run: Path, nnodes="2", **options) -> list[str]:
    """3 epochs of 3 steps: 13 fields -> 7 per rank (one padded), micro-batches of 2, the last one short."""
    return command_line(
        "train",
        data,
        out=run,
        epochs=3,
        batch_size=2,
        size="128x128",
        precision="fp32",
        workers=0,
        target_acc=0.0,
        checkpoint_every=1,
        nproc_per_node=1,
        nnodes=nnodes,
        **options,
    )


def finish(processes: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[tuple[int, str]]:
    """(exit code, stderr) of each, once all have ended."""
    done = []
    for process in processes:
        _, stderr = process.communicate(timeout=timeout)
        done.append((process.returncode, stderr))
    return done


def on_both(a: Host, b: Host, arguments: list[str]) -> list[tuple[int, str]]:
    return finish([a.run(arguments), b.run(arguments)])


def rows(path: Path, columns=("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc")):
    with open(path, newline="") as f:
        return [{c: r[c] for c in columns if c in r} for r in csv.DictReader(f)]


def same_weights(run: Path, reference: Path) -> bool:
    got, expected = load_file(run / "weights.safetensors"), load_file(reference / "weights.safetensors")
    return got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.fixture(scope="module")
def single_host(two_per_class, tmp_path_factory):
    """The reference: 2 ranks on one host (`--nproc-per-node 2`), the same global batch of 4."""
    run = tmp_path_factory.mktemp("single_host") / "run"
    line = train_options(two_per_class, run, nnodes="1")
    line[line.index("--nproc-per-node") + 1] = "2"
    result = subprocess.run([str(SCRIPT), *line], env=environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("*.safetensors")) if (run / "checkpoints").exists() else []


def lose_after_a_checkpoint(host: Host, run: Path, processes: list[subprocess.Popen]) -> float:
    """Wait for the run's second checkpoint, then lose the host; returns when it was lost (monotonic)."""
    deadline = time.monotonic() + TIMEOUT
    while len(checkpoints(run)) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "no checkpoint written"
        time.sleep(0.1)
    host.lose()
    return time.monotonic()


def test_two_hosts_over_a_veth_pair_train_as_two_ranks_on_one_host(hosts, two_per_class, single_host, tmp_path):
    a, b = hosts
    run = tmp_path / "run"
    results = on_both(a, b, train_options(two_per_class, run, rdzv_endpoint=f"{a.address}:{PORT}"))
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert rows(run / "metrics.csv") == rows(single_host / "metrics.csv")
    assert rows(run / "steps.csv") == rows(single_host / "steps.csv")
    assert same_weights(run, single_host)
    info = json.loads((run / "run.json").read_text())
    assert info["ranks"] == 2 and info["global_batch"] == 4


def test_a_lost_host_stops_the_run_naming_it_and_resume_finishes_it(hosts, two_per_class, single_host, tmp_path):
    a, b = hosts
    run = tmp_path / "run"
    line = train_options(two_per_class, run, rdzv_endpoint=f"{a.address}:{PORT}")
    processes = [a.run(line), b.run(line)]
    lost_at = lose_after_a_checkpoint(b, run, processes)
    [(code, stderr)] = finish(processes[:1], timeout=180)
    stopped_in = time.monotonic() - lost_at
    assert code != 0 and stopped_in < 180, stderr[-3000:]  # bounded: no collective waits out its timeout
    assert f"lost contact with {b.address}" in " ".join(stderr.split()), stderr[-3000:]
    finish(processes[1:])
    results = on_both(a, b, [*line, "--resume"])
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert rows(run / "metrics.csv") == rows(single_host / "metrics.csv")  # as a run never stopped
    assert same_weights(run, single_host)


def test_with_an_elastic_range_the_remaining_host_goes_on_and_finishes(hosts, two_per_class, tmp_path):
    a, b = hosts
    run = tmp_path / "run"
    line = train_options(two_per_class, run, nnodes="1:2", max_restarts=1, rdzv_endpoint=f"{a.address}:{PORT}")
    processes = [a.run(line), b.run(line)]
    lose_after_a_checkpoint(b, run, processes)
    [(code, stderr)] = finish(processes[:1])
    finish(processes[1:])
    assert code == 0, stderr[-3000:]
    assert [int(r["epoch"]) for r in rows(run / "metrics.csv")] == [1, 2, 3]
    assert [int(r["step"]) for r in rows(run / "steps.csv")] == list(range(1, 10))
    info = json.loads((run / "run.json").read_text())
    [resume] = info["resumes"]
    assert resume["elastic_restart"] and info["epochs_done"] == 3
    assert info["global_batch"] == 4 and info["train_config"]["accumulation"] == 2  # one rank, the same batch

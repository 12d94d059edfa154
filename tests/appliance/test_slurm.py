"""`classify --shard auto` under Slurm: the array variables, then a real single-host Slurm (munged,
slurmctld and slurmd started here, as root) running docs/slurm/submit-plate.sh: 4 array tasks and the
dependent merge equal one whole run."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.classify import classify_plate, parse_shard
from appliance.inference import Classifier
from tests.conftest import write_plate

REPO = Path(__file__).resolve().parents[2]
SUBMIT = REPO / "docs" / "slurm" / "submit-plate.sh"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue")


def array_task(task, count, first, last) -> dict:
    return {
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(first),
        "SLURM_ARRAY_TASK_MAX": str(last),
    }


def test_shard_auto_is_the_tasks_place_in_the_slurm_array():
    assert parse_shard("auto", array_task(2, 4, 0, 3)) == (2, 4)
    assert parse_shard("auto", array_task(7, 4, 5, 8)) == (2, 4)  # --array=5-8
    assert parse_shard("auto", array_task(0, 1, 0, 0)) == (0, 1)
    assert parse_shard("1/4", array_task(2, 4, 0, 3)) == (1, 4)  # I/N given: the variables do not matter
    with pytest.raises(ValueError, match="not a task of a Slurm job array .SLURM_ARRAY_TASK_ID"):
        parse_shard("auto", {"SLURM_JOB_ID": "12"})
    with pytest.raises(ValueError, match="array 0-6 holds 4 tasks, not 7"):
        parse_shard("auto", array_task(2, 4, 0, 6))  # --array=0-6:2 would leave shards out
    with pytest.raises(ValueError, match="not whole numbers"):
        parse_shard("auto", array_task("x", 4, 0, 3))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=mcnntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster of this machine; yields the environment its clients need. Needs root
    and Debian's slurm-wlm and munge (.ci/run installs them): missing in CI fails, elsewhere skips."""
    missing = [name for name in DAEMONS if not shutil.which(name)]
    if missing or os.geteuid() != 0:
        why = f"needs root and slurm-wlm, munge ({', '.join(missing) or 'not root'})"
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    root = Path(tmp_path_factory.mktemp("slurm", numbered=True))
    root.chmod(0o755)  # munged wants its socket's folder reachable
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(host=host, root=root, ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count())
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    logs = open(root / "daemons.log", "w")
    started = []
    try:
        started.append(
            subprocess.Popen(
                ["munged", "-F", "-f", f"--key-file={key}", f"--socket={root}/munge.socket"]
                + [f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed", f"--log-file={root}/munge.log"],
                stdout=logs,
                stderr=logs,
            )
        )
        wait_for(lambda: (root / "munge.socket").exists(), 10, "munged's socket", root)
        started.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", conf], env=env, stdout=logs, stderr=logs))
        started.append(subprocess.Popen(["slurmd", "-D", "-f", conf, "-N", host], env=env, stdout=logs, stderr=logs))
        wait_for(lambda: node_state(env) == "idle", 30, "the node idle in sinfo", root)
        yield env
    finally:
        for daemon in reversed(started):
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        logs.close()


def node_state(env) -> str:
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
    return result.stdout.strip()


def wait_for(condition, seconds: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in sorted(root.glob("*.log")))
            pytest.fail(f"Slurm: no {what} after {seconds} s\n{logs}", pytrace=False)
        time.sleep(0.5)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_an_array_of_four_shards_and_the_dependent_merge_equal_one_whole_run(slurm, tiny_model, tmp_path):
    written = write_plate(tmp_path / "plate", wells=("B02", "B03", "C02", "C03"), sites=(1, 2, 3))
    written[("C03", 2)]["Actin"].write_bytes(b"II*\0")  # a failed field: its shard exits 1, the merge still runs
    classify_plate(tmp_path / "plate", Classifier(tiny_model), tmp_path / "whole")
    out = tmp_path / "out"
    # The jobs run the console script beside this Python, importing this checkout.
    env = {**slurm, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    submitted = subprocess.run(
        [SUBMIT, tmp_path / "plate", tiny_model, out, "4"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert submitted.returncode == 0, submitted.stderr
    jobs = submitted.stdout.split()
    root = Path(slurm["SLURM_CONF"]).parent
    queued = lambda: subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], env=slurm, capture_output=True, text=True)  # noqa: E731
    wait_for(lambda: not queued().stdout.strip(), 300, "end of the jobs", root)
    outputs = "\n".join(p.read_text() for p in sorted(out.glob("slurm-*.out")))
    assert sorted(p.name for p in out.glob("shard-*")) == [f"shard-{i}" for i in range(4)], outputs
    shards = [json.loads((out / f"shard-{i}" / "summary.json").read_text())["shard"] for i in range(4)]
    assert shards == ["0/4", "1/4", "2/4", "3/4"]  # each task found its own shard
    for name in ("fields.csv", "wells.csv", "failures.csv"):
        assert read_csv(out / "merged" / name) == read_csv(tmp_path / "whole" / name), (name, outputs)

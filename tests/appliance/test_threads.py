"""Compute threads: the affinity mask, capped by the cgroup CPU quota (docker run --cpus), or MCNN_THREADS."""

import os

import pytest

from appliance.threads import cgroup_cpu_limit, compute_threads


def files(folder, cpu_max=None, cfs=None):
    """A stand-in for /sys/fs/cgroup: cgroup v2's cpu.max, or v1's quota and period."""
    folder.mkdir(exist_ok=True)
    paths = {"cpu_max": folder / "cpu.max", "cfs_quota": folder / "quota", "cfs_period": folder / "period"}
    if cpu_max is not None:
        paths["cpu_max"].write_text(cpu_max)
    if cfs is not None:
        paths["cfs_quota"].write_text(str(cfs[0]))
        paths["cfs_period"].write_text(str(cfs[1]))
    return paths


def test_the_cgroup_quota_in_whole_cpus(tmp_path):
    assert cgroup_cpu_limit(**files(tmp_path / "a", "250000 100000\n")) == 3  # docker run --cpus 2.5
    assert cgroup_cpu_limit(**files(tmp_path / "b", "max 100000\n")) is None
    assert cgroup_cpu_limit(**files(tmp_path / "c", cfs=(50000, 100000))) == 1  # cgroup v1, half a CPU
    assert cgroup_cpu_limit(**files(tmp_path / "d", cfs=(-1, 100000))) is None
    assert cgroup_cpu_limit(**files(tmp_path / "e")) is None  # no cgroup files at all


def test_compute_threads_is_the_affinity_capped_by_the_quota_or_mcnn_threads(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    assert compute_threads({}, **files(tmp_path)) == cpus
    assert compute_threads({}, **files(tmp_path / "q", "100000 100000")) == 1
    assert compute_threads({"MCNN_THREADS": "0"}, **files(tmp_path)) == cpus
    assert compute_threads({"MCNN_THREADS": "7"}, **files(tmp_path / "q")) == 7
    for bad in ("-2", "four"):
        with pytest.raises(ValueError, match=f"MCNN_THREADS='{bad}'"):
            compute_threads({"MCNN_THREADS": bad})

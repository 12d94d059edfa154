"""Compute threads: the affinity mask, capped by the smallest CPU quota over the process's cgroup and
its parents (v2 cpu.max, v1 cfs quota), or MCNN_THREADS. The cgroup trees are fakes in tmp folders."""

import os

import pytest

from appliance.threads import cgroup_cpu_limit, compute_threads


def tree(root, proc_cgroup: str, files: dict[str, str]):
    """A stand-in for /sys/fs/cgroup holding files {relative path: text}, and /proc/self/cgroup's text."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "proc-self-cgroup").write_text(proc_cgroup)
    return {"proc_cgroup": root / "proc-self-cgroup", "root": root}


V2 = {"cgroup.controllers": "cpu memory\n"}  # the mark of a cgroup v2 mount


def test_cgroup_v2_the_smallest_cpu_max_from_the_process_up_to_the_root(tmp_path):
    service = "system.slice/mcnn-watch.service"
    unlimited = {**V2, f"{service}/cpu.max": "max 100000\n", "system.slice/cpu.max": "max 100000\n"}
    assert cgroup_cpu_limit(**tree(tmp_path / "a", f"0::/{service}\n", unlimited)) is None
    quota = {**unlimited, f"{service}/cpu.max": "250000 100000\n"}  # CPUQuota=250% on the service
    assert cgroup_cpu_limit(**tree(tmp_path / "b", f"0::/{service}\n", quota)) == 3
    parent = {**quota, "system.slice/cpu.max": "150000 100000\n"}  # the slice allows less: it wins
    assert cgroup_cpu_limit(**tree(tmp_path / "c", f"0::/{service}\n", parent)) == 2
    nested = {**V2, "outer/cpu.max": "200000 100000", "outer/inner/cpu.max": "400000 100000"}
    assert cgroup_cpu_limit(**tree(tmp_path / "d", "0::/outer/inner/worker\n", nested)) == 2  # no worker/ folder
    as_root = {**V2, "cpu.max": "50000 100000\n"}  # a container's own cgroup mounted as the root (cgroupns)
    assert cgroup_cpu_limit(**tree(tmp_path / "e", "0::/\n", as_root)) == 1


def test_cgroup_v1_cfs_quota_over_period_at_every_level(tmp_path):
    lines = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    half = {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"}
    assert cgroup_cpu_limit(**tree(tmp_path / "a", lines, half)) == 1
    parent = {
        "cpu/docker/abc/cpu.cfs_quota_us": "-1",
        "cpu/docker/abc/cpu.cfs_period_us": "100000",
        "cpu/docker/cpu.cfs_quota_us": "300000",
        "cpu/docker/cpu.cfs_period_us": "100000",
    }  # only a `cpu` mount, the quota on the parent
    assert cgroup_cpu_limit(**tree(tmp_path / "b", lines, parent)) == 3
    none = {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}
    assert cgroup_cpu_limit(**tree(tmp_path / "c", "1:cpu:/\n0::/\n", none)) is None


def test_hybrid_layout_and_missing_or_bad_files_mean_no_limit(tmp_path):
    hybrid = {"unified/app/cpu.max": "100000 100000", "cpu/app/cpu.cfs_quota_us": "200000"}  # v1 period missing
    assert cgroup_cpu_limit(**tree(tmp_path / "a", "0::/app\n3:cpu:/app\n", hybrid)) == 1
    garbage = {**V2, "app/cpu.max": "lots\n", "cpu.max": "100000 0"}
    assert cgroup_cpu_limit(**tree(tmp_path / "b", "0::/app\n", garbage)) is None
    assert cgroup_cpu_limit(proc_cgroup=tmp_path / "absent", root=tmp_path) is None
    assert cgroup_cpu_limit(**tree(tmp_path / "c", "0::/app\n", {})) is None  # no cgroup files at all


def test_compute_threads_is_the_affinity_capped_by_the_quota_or_mcnn_threads(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    free = tree(tmp_path / "free", "0::/\n", V2)
    one = tree(tmp_path / "one", "0::/app\n", {**V2, "app/cpu.max": "100000 100000"})
    assert compute_threads({}, **free) == cpus
    assert compute_threads({}, **one) == 1
    assert compute_threads({"MCNN_THREADS": "0"}, **free) == cpus
    assert compute_threads({"MCNN_THREADS": "7"}, **one) == 7
    for bad in ("-2", "four"):
        with pytest.raises(ValueError, match=f"MCNN_THREADS='{bad}'"):
            compute_threads({"MCNN_THREADS": bad})
    assert compute_threads({}) >= 1  # this machine's own /proc/self/cgroup

"""How many compute threads this process should run: the CPUs it may really use, or MCNN_THREADS.

A container started with `docker run --cpus 4` on a 64-core host still sees 64 CPUs in its
affinity mask; only the cgroup's CPU quota says 4. Running 64 threads there makes them wait for
each other's time slices, so the quota caps the count. MCNN_THREADS=N (N > 0) overrides both.

The quota may be set on any cgroup above the process, not only its own: a systemd service's
`CPUQuota=` sits on the service's cgroup while the process may be in a child, and a nested
container's limit is under its parent's. So the process's cgroup is read from /proc/self/cgroup and
every level up to the mount's root is read: cgroup v2's cpu.max and cgroup v1's cpu.cfs_quota_us
(over cpu.cfs_period_us). The smallest quota wins, as the kernel enforces every level. A level whose
folder is not visible (a container's cgroup mounted as its root) is skipped; the root itself is read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")  # "0::/PATH" (v2), "N:cpu,cpuacct:/PATH" (v1)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroups(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu controller's "CONTROLLERS:PATH") of this process, from /proc/self/cgroup."""
    v2 = v1 = None
    for line in proc_cgroup.read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = f"{controllers}:{path}"
    return v2, v1


def levels(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and every parent up to the mount's root, those that exist."""
    parts = [p for p in path.split("/") if p]
    folders = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]


def read_fraction(quota_file: Path, period_file: Path | None = None) -> float | None:
    """CPUs a level allows: v2 cpu.max "QUOTA PERIOD" (or "max ..."), v1 quota and period files (-1: none)."""
    try:
        if period_file is None:
            quota, period = quota_file.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota, period = int(quota_file.read_text()), int(period_file.read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):  # no such file at this level, unreadable, nonsense
        return None


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """The smallest CPU quota over this process's cgroup and its parents, rounded up to whole CPUs;
    None when there is none (or /proc/self/cgroup cannot be read)."""
    try:
        v2, v1 = own_cgroups(proc_cgroup)
    except (OSError, ValueError):
        return None
    fractions = []
    if v2 is not None:  # pure v2 mounts it at the root; the hybrid layout under unified/
        mount = root if (root / "cgroup.controllers").exists() else root / "unified"
        fractions += [read_fraction(level / "cpu.max") for level in levels(mount, v2)]
    if v1 is not None:
        controllers, path = v1.split(":", 1)
        mount = next((root / name for name in (controllers, "cpu") if (root / name).is_dir()), None)
        for level in levels(mount, path) if mount else []:
            fractions.append(read_fraction(level / "cpu.cfs_quota_us", level / "cpu.cfs_period_us"))
    quotas = [f for f in fractions if f is not None]
    return max(1, math.ceil(min(quotas))) if quotas else None


def compute_threads(environ=os.environ, **cgroup_files) -> int:
    """MCNN_THREADS if set above 0, else the CPUs of the affinity mask capped by the cgroup quota
    (cgroup_files: cgroup_cpu_limit's proc_cgroup and root, for tests)."""
    value = environ.get("MCNN_THREADS", "").strip()
    if value not in ("", "0"):
        try:
            threads = int(value)
        except ValueError:
            threads = -1
        if threads < 1:
            raise ValueError(f"MCNN_THREADS={value!r}: expected a whole number of threads (0 or unset: all CPUs)")
        return threads
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(**cgroup_files)
    return min(cpus, limit) if limit else cpus

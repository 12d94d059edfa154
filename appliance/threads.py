"""How many compute threads this process should run: the CPUs it may really use, or MCNN_THREADS.

A container started with `docker run --cpus 4` on a 64-core host still sees 64 CPUs in its
affinity mask; only the cgroup's CPU quota says 4. Running 64 threads there makes them wait for
each other's time slices, so the quota caps the count. MCNN_THREADS=N (N > 0) overrides both.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
CFS_QUOTA, CFS_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit(cpu_max: Path = CPU_MAX, cfs_quota: Path = CFS_QUOTA, cfs_period: Path = CFS_PERIOD) -> int | None:
    """The CPU quota of this process's cgroup, rounded up to whole CPUs; None when there is none."""
    try:
        if cpu_max.exists():
            quota, period = cpu_max.read_text().split()[:2]
            return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
        if cfs_quota.exists():  # cgroup v1
            quota, period = int(cfs_quota.read_text()), int(cfs_period.read_text())
            return None if quota <= 0 else max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        return None
    return None


def compute_threads(environ=os.environ, **cgroup_files) -> int:
    """MCNN_THREADS if set above 0, else the CPUs of the affinity mask capped by the cgroup quota."""
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

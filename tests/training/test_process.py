import os
import platform
import subprocess
import sys

import pytest

from training.process import rank_cores


def test_each_local_rank_gets_its_own_block_of_cores():
    cores = [4, 5, 6, 7, 0, 1, 2, 3]  # as sched_getaffinity may list them
    blocks = [rank_cores(cores, r, 3) for r in range(3)]
    assert blocks == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert sorted(c for b in blocks for c in b) == sorted(cores)  # every core used once
    assert [rank_cores([0, 1], r, 1) for r in range(1)] == [[0, 1]]


def test_more_ranks_than_cores_share_cores():
    assert [rank_cores([0, 1], r, 4) for r in range(4)] == [[0], [1], [0], [1]]


RSS_AFTER_FREE = """
import sys
import numpy as np
from training.process import keep_freed_memory

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

if sys.argv[1] == "keep":
    print(keep_freed_memory())
before = rss_mb()
block = np.ones(256 * 2**20, dtype=np.uint8)  # 256 MB, every page touched
del block
print(round(rss_mb() - before))
"""


def rss_kept_after_free(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", RSS_AFTER_FREE, mode],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
    ).stdout.split("\n")
    return (out[0] if mode == "keep" else ""), int(out[-2])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_stays_with_the_process_for_the_next_step():
    allocator, kept = rss_kept_after_free("keep")
    assert allocator == "glibc malloc, freed memory kept"
    assert kept > 200  # MB of the freed block still mapped, ready for reuse
    _, default = rss_kept_after_free("default")
    assert default < 50  # glibc's default: the block was unmapped on free

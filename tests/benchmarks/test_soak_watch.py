"""The short soak of `mcnn-appliance watch` (benchmarks/soak_watch.py, ~2 min): plates written slowly,
stalled, corrupt; the watcher SIGKILLed and restarted, its results disk full for a while (as root), its
model folder away for a while. No field may be lost or classified twice, no result file half-written."""

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_watch.py"


def test_a_short_soak_with_faults_loses_no_field(tmp_path):
    # Faults every 5 to 12 s over 90 s of writing: each kind is drawn a few times (seed 3).
    command = [sys.executable, SOAK, "--minutes", "1.5", "--seed", "3", "--fault-every", "5", "12", "--settle", "90"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert report["fields lost"] == "0, classified twice: 0", result.stdout
    faults = dict(item.rsplit(" ", 1) for item in report["faults survived"].split(", "))
    assert int(faults["kill"]) >= 1 and int(faults["corrupt_field"]) >= 1, result.stdout
    assert int(report["watcher restarts"].split()[0]) >= 1, result.stdout

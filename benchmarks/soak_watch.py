"""Soak `mcnn-appliance watch` with injected faults, then check that no field was lost.

    python benchmarks/soak_watch.py --minutes 1.5   # the short one (tests/benchmarks/test_soak_watch.py)
    python benchmarks/soak_watch.py --minutes 12    # the long one (docs/cluster.md)

A writer drops plates (BBBC021-named TIFFs, then a COMPLETE marker) into an inbox at a steady rate;
some are copied slowly (every file in two pieces, 0.3 s apart), some stall half-way through one file
for 2-5 s and then finish, some carry a corrupt or a truncated channel file. The watcher runs as its
own process under a supervisor loop that restarts it whenever it exits (as Docker's restart policy
would). At random moments a fault is injected: the watcher SIGKILLed; the results disk (a small
tmpfs, as root) filled up for a while and then freed; the model folder moved away for a while (the
watcher killed too, so its restart finds it missing). When the writer is done and every plate is
settled, the watcher is stopped and the results are checked: every field of every plate classified
exactly once or listed in failures.csv with a reason, every plate in the ledger as done, every
result file whole.

It prints plates/hour held, latency from a plate's marker to its summary.json (p50/p95), restarts
and faults survived, fields lost (must be 0); the exit code is 1 when anything was lost or half-
written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
WELLS, SITES, CHANNELS = ("B02", "B03"), (1, 2), (1, 2, 4)  # BBBC021's wavelengths: DAPI, Tubulin, Actin
SIZE = (128, 128)
WATCH = "from appliance.cli import app; app(prog_name='mcnn-appliance')"


class Soak:
    def __init__(self, work: Path, model: Path, args):
        self.args, self.model, self.rng = args, model, random.Random(args.seed)
        self.inbox, self.results = work / "inbox", work / "results"
        self.inbox.mkdir(parents=True)
        self.results.mkdir()
        self.tmpfs = args.disk_full and os.geteuid() == 0
        if self.tmpfs:  # the results disk: small, so that it can be filled
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(self.results)], check=True)
        self.plates: dict[str, dict] = {}  # name -> {"fields": set, "corrupt": set, "complete_at": float}
        self.watcher: subprocess.Popen | None = None
        self.lock, self.finished = threading.Lock(), threading.Event()
        self.restarts, self.exits = 0, []
        self.faults = {"kill": 0, "disk_full": 0, "model_away": 0, "corrupt_field": 0, "slow_copy": 0, "stall": 0}

    # The watcher under a supervisor loop.
    def supervise(self) -> None:
        log = open(self.inbox.parent / "watch.log", "a")
        while not self.finished.is_set():
            command = [sys.executable, "-c", WATCH, "watch", str(self.inbox), "--model", str(self.model)]
            command += ["--out", str(self.results), "--settle", "30", "--poll", "0.5", "--retry-delay", "2"]
            env = {**os.environ, "PYTHONPATH": str(REPO), "MCNN_THREADS": "1"}
            with self.lock:
                self.watcher = subprocess.Popen(command, stdout=log, stderr=log, env=env)
            code = self.watcher.wait()
            self.exits.append(code)
            if not self.finished.is_set():
                self.restarts += 1
                time.sleep(1.0)  # Docker's restart policy waits too

    def kill_watcher(self) -> None:
        with self.lock:
            if self.watcher and self.watcher.poll() is None:
                self.watcher.send_signal(signal.SIGKILL)

    # The writer.
    def write_plates(self) -> None:
        for index in range(self.args.plates):
            started = time.monotonic()
            name = f"Week1_{index:04d}"
            mode = self.rng.choice(["copy"] * 4 + ["slow", "stall"])
            corrupt = self.rng.random() < 0.3
            self.faults["slow_copy" if mode == "slow" else "stall"] += mode != "copy"
            self.plates[name] = self.write_plate(self.inbox / name, mode, corrupt)
            time.sleep(max(0.0, 3600 / self.args.rate - (time.monotonic() - started)))

    def write_plate(self, folder: Path, mode: str, corrupt: bool) -> dict:
        folder.mkdir()
        rng = np.random.default_rng(self.rng.randrange(2**32))
        fields = {(well, site) for well in WELLS for site in SITES}
        broken = {self.rng.choice(sorted(fields))} if corrupt else set()
        stalled = (self.rng.choice(sorted(fields)), self.rng.choice(CHANNELS))  # the one file a stall hits
        for well, site in sorted(fields):
            for channel in CHANNELS:
                path = folder / f"{well}_s{site}_w{channel}{str(uuid.uuid4()).upper()}.tif"
                image = rng.normal(1000, 300, SIZE).clip(0, 65535).astype(np.uint16)
                data = tiff_bytes(image)
                if (well, site) in broken and channel == 4:
                    data = data[: len(data) // 3] if self.rng.random() < 0.5 else b"II*\0" + os.urandom(64)
                self.copy(data, path, mode if mode != "stall" or ((well, site), channel) == stalled else "copy")
        self.faults["corrupt_field"] += len(broken)
        (folder / "COMPLETE").touch()
        return {"fields": fields, "corrupt": broken, "complete_at": time.time()}

    def copy(self, data: bytes, path: Path, mode: str) -> None:
        """Written as an imager or a copy tool would: in pieces, slowly, or stalled half-way."""
        with open(path, "wb") as f:
            if mode == "copy":
                f.write(data)
                return
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            time.sleep(0.3 if mode == "slow" else self.rng.uniform(2, 5))
            f.write(data[half:])

    # The faults.
    def inject_faults(self) -> None:
        while not self.finished.wait(self.rng.uniform(*self.args.fault_every)):
            fault = self.rng.choice(
                ["kill", "kill", "disk_full", "model_away"] if self.tmpfs else ["kill", "model_away"]
            )
            self.faults[fault] += 1
            if fault == "kill":
                self.kill_watcher()
            elif fault == "disk_full":
                filler = self.results / ".filler"
                with open(filler, "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * (1 << 20))
                    except OSError:  # ENOSPC: the disk is full
                        pass
                time.sleep(self.rng.uniform(3, 8))
                filler.unlink()
            else:
                away = self.model.with_name(self.model.name + ".away")
                self.model.rename(away)
                self.kill_watcher()  # its restart finds no model: exit 2, restarted again
                time.sleep(self.rng.uniform(2, 4))
                away.rename(self.model)

    def settled(self) -> bool:
        try:
            ledger = json.loads((self.results / "watch-ledger.json").read_text())["plates"]
        except (OSError, ValueError, KeyError):
            return False
        return all(ledger.get(name, {}).get("status") == "done" for name in self.plates)

    def run(self) -> dict:
        threads = [threading.Thread(target=self.supervise), threading.Thread(target=self.inject_faults)]
        for thread in threads:
            thread.start()
        start = time.monotonic()
        try:
            self.write_plates()
            deadline = time.monotonic() + self.args.settle
            while not self.settled() and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            self.finished.set()
            wall = time.monotonic() - start
            with self.lock:
                if self.watcher and self.watcher.poll() is None:
                    self.watcher.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join()
        log = (self.inbox.parent / "watch.log").read_text(errors="replace").splitlines()
        crashes = sorted({line for line in log if line.startswith(("OSError", "PermissionError", "RuntimeError"))})
        return {**check(self.results, self.plates), "wall_s": wall, "crashes": crashes}

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", str(self.results)], check=False)


def tiff_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    return buffer.getvalue()


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check(results: Path, plates: dict) -> dict:
    """Every field classified exactly once or failed with a reason; every plate done; every file whole."""
    lost, duplicated, problems, latencies = 0, 0, [], []
    ledger = json.loads((results / "watch-ledger.json").read_text())["plates"]
    for name, written in plates.items():
        entry, out = ledger.get(name), results / name
        if not entry or entry.get("status") != "done":
            problems.append(f"{name}: not done in the ledger ({entry})")
            lost += len(written["fields"])
            continue
        try:
            summary = json.loads((out / "summary.json").read_text())
            classified = [(r["Metadata_Well"], int(r["Metadata_Site"])) for r in read_rows(out / "fields.csv")]
            failed = read_rows(out / "failures.csv") if (out / "failures.csv").exists() else []
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{name}: a result file is missing or half-written: {exc}")
            lost += len(written["fields"])
            continue
        failed_fields = {(r["Metadata_Well"], int(r["Metadata_Site"])): r for r in failed}
        without_reason = [key for key, row in failed_fields.items() if not (row.get("Reason") or "").strip()]
        seen = classified + list(failed_fields)
        duplicated += len(seen) - len(set(seen))
        lost += len(written["fields"] - set(seen))
        if set(failed_fields) != written["corrupt"] or without_reason:
            problems.append(f"{name}: failures {sorted(failed_fields)} != corrupt {sorted(written['corrupt'])}")
        if summary["counts"]["classified"] + summary["counts"]["failed"] != len(written["fields"]):
            problems.append(f"{name}: summary counts {summary['counts']}")
        latencies.append((out / "summary.json").stat().st_mtime - written["complete_at"])
    leftovers = [str(p) for p in results.rglob("*") if p.name.endswith((".tmp", ".part")) or ".partial" in p.parts]
    problems += [f"left behind: {p}" for p in leftovers]
    return {"lost": lost, "duplicated": duplicated, "problems": problems, "latencies": latencies}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="how long the writer writes plates")
    parser.add_argument("--rate", type=float, default=360.0, help="plates written per hour")
    parser.add_argument("--model", type=Path, help="export folder (default: tests/tiny_ir.py's tiny model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to wait for the last plates")
    parser.add_argument("--no-disk-full", dest="disk_full", action="store_false", help="no tmpfs results disk")
    parser.add_argument("--fault-every", type=float, nargs=2, default=(8.0, 20.0), metavar=("MIN", "MAX"))
    args = parser.parse_args(argv)
    args.plates = max(1, int(args.minutes * args.rate / 60))
    with tempfile.TemporaryDirectory(prefix="soak-watch-") as tmp:
        work = Path(tmp)
        model = work / "model"
        if args.model:
            shutil.copytree(args.model, model)
        else:
            sys.path.insert(0, str(REPO))
            from tests.tiny_ir import write_model

            write_model(model)
        soak = Soak(work, model, args)
        try:
            report = soak.run()
        finally:
            soak.close()
    print_report(soak, report, args)
    return 1 if report["lost"] or report["duplicated"] or report["problems"] else 0


def print_report(soak: Soak, report: dict, args) -> None:
    latencies = sorted(report["latencies"]) or [float("nan")]
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    fields = sum(len(p["fields"]) for p in soak.plates.values())
    print(f"cpu: {cpu_name()}, {len(os.sched_getaffinity(0))} cores")
    print(f"plates: {len(soak.plates)} ({fields} fields) in {report['wall_s']:.0f} s")
    print(f"plates/hour held: {len(soak.plates) / report['wall_s'] * 3600:.1f} (written at {args.rate:g}/h)")
    print(f"latency marker -> results: p50 {statistics.median(latencies):.1f} s, p95 {p95:.1f} s")
    print(f"watcher restarts: {soak.restarts} (exit codes {sorted(set(soak.exits))})")
    print("faults survived: " + ", ".join(f"{k} {v}" for k, v in soak.faults.items()))
    if not soak.tmpfs:
        print("disk full: not injected (needs root for a tmpfs results disk, or --no-disk-full given)")
    for crash in report["crashes"]:
        print(f"watcher crashed (restarted): {crash[:160]}")
    print(f"fields lost: {report['lost']}, classified twice: {report['duplicated']}")
    for problem in report["problems"]:
        print(f"PROBLEM {problem}")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())

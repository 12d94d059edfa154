"""Watch an inbox folder and classify each plate once the imager has finished writing it.

Every sub-folder of the inbox is a plate. A plate is complete when its marker file is there, or
when none of its files has changed for the settle period. Changes are what this watcher itself
saw between polls (names, sizes, modification times), not the files' own times: a copy that
keeps timestamps makes a half-copied plate look old. Either way the plate must also look the
same on two polls in a row, so a file still being written is never read.

OUT/watch-ledger.json records each plate's status and attempts. It is rewritten atomically
after every change, so a restarted watcher never classifies a finished plate again, and a plate
that keeps failing is tried a bounded number of times; a ledger that cannot be written (a full
disk) stays in memory and is written again every poll. A lock file keeps a second watcher off
the same results folder.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appliance.classify import classify_plate
from appliance.files import FolderBusy, lock_folder, write_json
from appliance.results import utc_now

LEDGER, LOCK = "watch-ledger.json", ".watch.lock"
CONFIG = "mcnn-watch.toml"  # in the inbox: how its plates are read, set up once per imager
# How a plate is read and classified (classify_plate's options), and their types in the config file.
PLATE_OPTIONS = {
    "layout": str,
    "channels": str,
    "platemap": str,
    "fit": str,
    "plane": int,
    "timepoint": int,
    "project": str,
    "embeddings": bool,
    "plate_wells": int,
    "cpa": bool,
}
DONE, FAILED, RUNNING, INTERRUPTED = "done", "failed", "running", "interrupted"
UNREADABLE = "unreadable"  # the plate folder (or one inside it) cannot be listed; looked at again every poll

Snapshot = dict[str, tuple[int, int]]  # path inside the plate -> (size, mtime_ns)


class WatchError(ValueError):
    """The watcher cannot start: the message names the folder and what is wrong."""


@dataclass
class WatchOptions:
    marker: str = "COMPLETE"  # a file of this name in a plate folder says the plate is complete
    settle: float = 300.0  # seconds without a change that make a plate complete; 0: only the marker does
    poll: float = 5.0  # seconds between looks at the inbox
    attempts: int = 3  # tries of a plate that fails before the watcher gives up on it
    retry_delay: float = 60.0  # seconds between two tries of a failed plate
    classify: dict = field(default_factory=dict)  # how every plate is read and classified (classify_plate's options)


def read_watch_config(inbox: Path) -> dict:
    """The plate options (and precision) INBOX/mcnn-watch.toml sets, or {} without the file."""
    path = Path(inbox) / CONFIG
    if not path.is_file():
        return {}
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise WatchError(f"{path}: not a readable TOML file ({exc})") from None
    known = {**PLATE_OPTIONS, "precision": str}
    for key, value in config.items():
        if key not in known:
            raise WatchError(f"{path}: unknown key {key!r}; the keys are {', '.join(known)}")
        if type(value) is not known[key]:
            raise WatchError(f"{path}: {key} = {value!r} should be a {known[key].__name__}")
    if "platemap" in config:  # relative to the config file, as a user writing it expects
        config["platemap"] = path.parent / config["platemap"]
    return config


def plate_options(inbox: Path, given: dict) -> tuple[str, dict]:
    """(precision, classify_plate's options): the inbox config's, those given on the command line winning."""
    options = {**read_watch_config(inbox), **given}
    return options.pop("precision", "auto"), options


def raise_error(exc: OSError) -> None:
    raise exc


def snapshot(plate_dir: Path) -> Snapshot:
    """Every file under the plate folder with its size and modification time; OSError when a folder in it
    cannot be listed (os.walk would skip it silently and the plate would look complete without it)."""
    files = {}
    for folder, _, names in os.walk(plate_dir, onerror=raise_error):
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed or removed while we looked (a temporary file)
                continue
            files[path.relative_to(plate_dir).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return files


def inbox_plates(inbox: Path) -> list[Path]:
    """The plate folders of the inbox; hidden folders (a copy tool's temporary ones) are not plates."""
    return sorted(p for p in inbox.iterdir() if p.is_dir() and not p.name.startswith("."))


class Ledger:
    """What happened to each plate, kept in one JSON file that is replaced whole on every change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.unsaved: str | None = None
        try:
            self.plates: dict[str, dict] = json.loads(self.path.read_text())["plates"] if self.path.exists() else {}
            for name, entry in self.plates.items():
                if not isinstance(entry, dict) or "status" not in entry:
                    raise ValueError(f"plate {name!r} has no status")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WatchError(f"{self.path}: not a watch ledger ({exc}); move it away to start afresh") from None
        for name, entry in self.plates.items():
            if entry["status"] == RUNNING:  # a watcher died inside this plate: that counts as a failed try
                self.record(name, status=FAILED, error="the watcher stopped during classification (killed?)")

    def get(self, plate: str) -> dict:
        return self.plates.get(plate, {"status": None, "attempts": 0})

    def record(self, plate: str, **entry) -> None:
        self.plates[plate] = {**self.get(plate), **entry, "updated": utc_now()}
        self.save()

    def save(self) -> None:
        """Write the whole ledger (synced: it decides what is never redone). A write that fails (a full
        disk, a share gone) leaves the ledger in memory, written whole by the next record or save;
        `unsaved` says why until then."""
        try:
            write_json(self.path, {"plates": self.plates})
        except OSError as exc:
            self.unsaved = str(exc)
        else:
            self.unsaved = None


@dataclass
class Sighting:
    files: Snapshot
    changed_at: float  # monotonic time at which the watcher last saw the files differ


class Watcher:
    """Polls until stopped (run()), one poll at a time (poll(now)), so tests drive it with their own clock;
    `classify` stands in for classify_plate in tests. log(line) tells progress, warn(line) problems."""

    def __init__(
        self,
        inbox: Path,
        out: Path,
        classifier,
        options: WatchOptions | None = None,
        stop: threading.Event | None = None,
        log=print,
        classify=classify_plate,
        warn=None,
    ):
        self.inbox, self.out = Path(inbox).resolve(), Path(out).resolve()
        self.options = options or WatchOptions()
        if not self.inbox.is_dir():
            raise WatchError(f"{self.inbox}: the inbox is not a folder")
        if self.out == self.inbox or self.inbox in self.out.parents:
            raise WatchError(
                f"{self.out}: the results folder must not be inside the inbox {self.inbox} "
                "(its folders would be taken for plates)"
            )
        if self.options.attempts < 1 or self.options.settle < 0 or self.options.poll <= 0:
            raise WatchError("attempts must be at least 1, settle at least 0 and poll above 0 seconds")
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = lock_folder(self.out, LOCK, "another watcher")
        except FolderBusy as exc:
            raise WatchError(str(exc)) from None
        try:
            self.ledger = Ledger(self.out / LEDGER)
        except WatchError:
            self._lock.close()
            raise
        self.classifier, self.stop, self.log, self.classify = classifier, stop or threading.Event(), log, classify
        self.warn = warn or log  # problems: printed even when log (progress) is silenced
        self.seen: dict[str, Sighting] = {}
        self.retry_at: dict[str, float] = {}
        self.given_up: set[str] = set()
        self.changed_after: set[str] = set()
        self.inbox_problem: str | None = None  # the last "cannot read the inbox" said, so it is said once
        self.ledger_problem: str | None = None  # the same for "cannot write the ledger"

    def close(self) -> None:
        self._lock.close()  # releases the lock

    def run(self) -> None:
        """Poll the inbox until stop is set."""
        done = sum(entry["status"] == DONE for entry in self.ledger.plates.values())
        opts = self.options
        self.log(
            f"watching {self.inbox} (marker {opts.marker}, settle {opts.settle:g} s, poll {opts.poll:g} s); "
            f"{done} plate(s) already done according to {self.ledger.path}"
        )
        while not self.stop.is_set():
            self.poll(time.monotonic())
            self.stop.wait(opts.poll)
        self.log("stopped")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def completion(self, plate: str, files: Snapshot, now: float) -> str | None:
        """Why the plate counts as complete now, or None while it is (or may still be) being written."""
        previous = self.seen.get(plate)
        if previous is None or previous.files != files:
            self.seen[plate] = Sighting(files, now)
            return None
        if self.options.marker in files:
            return f"marker {self.options.marker}"
        if files and self.options.settle and now - previous.changed_at >= self.options.settle:
            return f"no change for {self.options.settle:g} s"
        return None

    def waiting(self, plate: str, now: float) -> bool:
        """A plate done, given up on, or failed too recently is not looked at."""
        entry = self.ledger.get(plate)
        if entry["status"] == DONE:
            self.check_unchanged(plate, entry)
            return True
        if entry["status"] == FAILED and entry["attempts"] >= self.options.attempts:
            if plate not in self.given_up:
                self.given_up.add(plate)
                self.warn(
                    f"{plate}: failed {entry['attempts']} times, not tried again "
                    f"(last error: {entry.get('error')}); remove it from {self.ledger.path} to retry"
                )
            return True
        return now < self.retry_at.get(plate, 0.0)

    def check_unchanged(self, plate: str, entry: dict) -> None:
        """Say so (once) when files arrive in a plate already classified: it is not classified again."""
        try:
            mtime = (self.inbox / plate).stat().st_mtime_ns  # one stat: a file added, removed or renamed
        except OSError:
            return
        if entry.get("folder_mtime_ns") not in (None, mtime) and plate not in self.changed_after:
            self.changed_after.add(plate)
            self.warn(
                f"{plate}: files changed after the plate was classified; it is not classified again "
                f"(a longer --settle, or a marker, avoids this; remove it from {self.ledger.path} to redo it)"
            )

    def poll(self, now: float) -> list[str]:
        """Look at every plate once and classify those that are complete; returns their names."""
        try:
            return self.poll_plates(now)
        finally:
            self.check_ledger()

    def check_ledger(self) -> None:
        """A ledger that cannot be written is kept in memory and written again every poll; said once
        when that starts, and when it is written again."""
        if self.ledger.unsaved:
            self.ledger.save()
        if self.ledger.unsaved and not self.ledger_problem:
            self.warn(
                f"{self.ledger.unsaved}; the watcher goes on and writes the ledger again every poll "
                "(if it is restarted before then, it classifies again the plates the file does not record)"
            )
        elif self.ledger_problem and not self.ledger.unsaved:
            self.log(f"the ledger {self.ledger.path} is written again")
        self.ledger_problem = self.ledger.unsaved

    def poll_plates(self, now: float) -> list[str]:
        classified = []
        try:
            plates = inbox_plates(self.inbox)
        except OSError as exc:  # a network share that went away for a while: look again next poll
            problem = f"cannot read the inbox {self.inbox}: {exc.strerror or exc}"
            if problem != self.inbox_problem:  # said once per change, not once per poll
                self.warn(f"{problem}; looking again every {self.options.poll:g} s")
                self.inbox_problem = problem
            return classified
        if self.inbox_problem:
            self.log(f"the inbox {self.inbox} is readable again")
            self.inbox_problem = None
        for plate_dir in plates:
            if self.stop.is_set():
                break
            plate = plate_dir.name
            if self.waiting(plate, now):
                continue
            try:
                files = snapshot(plate_dir)
            except OSError as exc:
                self.unreadable(plate, exc)
                continue
            reason = self.completion(plate, files, now)
            if reason and self.classify_one(plate_dir, reason, now):
                classified.append(plate)
        return classified

    def unreadable(self, plate: str, exc: OSError) -> None:
        """A plate that cannot be listed: in the ledger and said once (again only if the error changes)."""
        error = f"cannot list {exc.filename or plate}: {exc.strerror or exc}"
        entry = self.ledger.get(plate)
        self.seen.pop(plate, None)  # completion starts afresh once it can be listed
        if entry["status"] == UNREADABLE and entry.get("error") == error:
            return
        self.ledger.record(plate, status=UNREADABLE, error=error)
        self.warn(f"{plate}: {error}; not classified until it can be listed (looked at again every poll)")

    def classify_one(self, plate_dir: Path, reason: str, now: float) -> bool:
        plate, attempt = plate_dir.name, self.ledger.get(plate_dir.name)["attempts"] + 1
        out_dir = self.out / plate
        try:
            before = plate_dir.stat()
        except OSError as exc:  # gone between the look and now
            self.log(f"{plate}: gone before classification ({exc.strerror or exc}); not classified")
            return False
        folder_mtime = before.st_mtime_ns
        self.ledger.record(plate, status=RUNNING, attempts=attempt, started=utc_now())
        self.log(f"{plate}: complete ({reason}); classifying (attempt {attempt} of {self.options.attempts})")
        try:
            summary = self.classify(plate_dir, self.classifier, out_dir, stop=self.stop, **self.options.classify)
        except Exception as exc:  # one bad plate must not stop the watcher: recorded, reported, retried
            if self.moved_away(plate_dir, before):
                return False
            error = f"{type(exc).__name__}: {exc}"
            if disk_full(exc):  # not the plate's fault: not one of its tries (found by benchmarks/soak_watch.py)
                self.retry_at[plate] = now + self.options.retry_delay
                self.log(f"{plate}: the results disk is full ({error}); retrying in {self.options.retry_delay:g} s")
                self.ledger.record(plate, status=INTERRUPTED, attempts=attempt - 1, error=error)
                return False
            self.ledger.record(plate, status=FAILED, error=error)
            self.retry_at[plate] = now + self.options.retry_delay
            more = f"retrying in {self.options.retry_delay:g} s" if attempt < self.options.attempts else "giving up"
            self.warn(f"{plate}: failed (attempt {attempt} of {self.options.attempts}): {error}; {more}")
            return False
        if self.moved_away(plate_dir, before):
            return False
        if summary.get("interrupted"):  # stopped on request: not the plate's fault, so not a try
            self.ledger.record(plate, status=INTERRUPTED, attempts=attempt - 1)
            self.log(f"{plate}: interrupted; it is classified again when the watcher restarts")
            return False
        counts = summary["counts"]
        self.ledger.record(
            plate,
            status=DONE,
            out=str(out_dir),
            classified=counts["classified"],
            failed_fields=counts["failed"],
            error=None,
            folder_mtime_ns=folder_mtime,
        )
        note = f", {counts['failed']} field(s) failed (see failures.csv)" if counts["failed"] else ""
        self.log(f"{plate}: {counts['classified']} fields classified{note} -> {out_dir}")
        return True

    def moved_away(self, plate_dir: Path, before: os.stat_result) -> bool:
        """A plate folder renamed or removed during classification (its fields then fail as "file not
        found") is interrupted, not done: recorded so, not counted as a try, and said."""
        try:
            after = plate_dir.stat()
            if (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino):
                return False
        except OSError:
            pass
        plate = plate_dir.name
        self.ledger.record(
            plate,
            status=INTERRUPTED,
            attempts=self.ledger.get(plate)["attempts"] - 1,
            error="the plate folder was moved or removed during classification",
        )
        self.seen.pop(plate, None)
        self.log(
            f"{plate}: the plate folder was moved or removed during classification; recorded as interrupted, "
            f"not done (the partial results in {self.out / plate} are classified again if it comes back)"
        )
        return True


def disk_full(exc: BaseException | None) -> bool:
    """Whether an error comes from a full disk or quota (ENOSPC, EDQUOT), however it was wrapped."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT), log=print):
    """An Event that SIGTERM/SIGINT set instead of killing the process, so the current field finishes."""
    stop = threading.Event()

    def handler(signum, frame):
        log(f"{signal.Signals(signum).name}: stopping after the current field")
        stop.set()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, old in previous.items():
            signal.signal(s, old)

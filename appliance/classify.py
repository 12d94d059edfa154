"""Classify a whole plate folder: discover fields, decode them while OpenVINO infers, commit as we go.

The pipeline: reader threads decode the next fields' TIFFs straight into a fixed pool of uint16
buffers; the main thread hands each filled buffer to the Classifier's AsyncInferQueue (THROUGHPUT
hint, the plugin's optimal number of requests in flight), which copies it into a free request
(one memcpy) and the buffer goes back to the readers. The IR takes raw uint16 and does the type
conversion and normalisation itself, so Python never converts a pixel after decoding.
Classified fields are committed in chunks (appliance.chunks) as they finish, so a rerun after a
crash skips them; the final files are written from the chunks at the end (appliance.results).
A field that cannot be read becomes a failure and the plate goes on; only problems with the
plate folder, the model or the results folder stop the run.
"""

from __future__ import annotations

import hashlib
import platform
import queue
import threading
import time
from pathlib import Path

import numpy as np

import appliance
from appliance.chunks import EMBEDDING, ChunkStore, field_key
from appliance.imageio import FieldError, read_plate_field
from appliance.inference import Classifier
from appliance.layouts.base import CHANNELS
from appliance.model_card import ModelCardError
from appliance.layouts.base import Failure, Field
from appliance.plate import detect_layout, discover_fields, plate_name
from appliance.report import write_report
from appliance.files import write_json
from appliance.results import RUN_JSON, failure_row, field_row, row_order, write_results

CHUNK_FIELDS = 64  # fields per committed chunk; at most this many (or CHUNK_SECONDS' worth) are redone after a crash
CHUNK_SECONDS = 30.0
READERS = 2  # decoding threads; TIFF reading releases the GIL


def default_out(plate_dir: Path) -> Path:
    """`<plate>-results` beside the plate folder."""
    folder = plate_folder(plate_dir)
    return folder.parent / f"{folder.name}-results"


def plate_folder(plate: Path) -> Path:
    """The folder holding the plate's images; a plate given as its manifest CSV is the CSV's folder."""
    plate = Path(plate).resolve()
    return plate.parent if plate.is_file() else plate


def check_out_dir(plate_dir: Path, out_dir: Path) -> None:
    # Results inside the plate would mix with the images and be rescanned next time.
    if out_dir == plate_dir or plate_dir in out_dir.parents:
        raise ValueError(f"{out_dir}: the output folder must not be inside the plate folder {plate_dir}")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), I counted from 0."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r}: expected I/N, e.g. 0/4 (I from 0 to N-1)") from None
    return check_shard((index, count))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected I/N with N >= 1 and I from 0 to N-1")
    return index, count


def shard_of(well: str, site: int, count: int) -> int:
    """Which of count shards a field belongs to: a hash of well and site, the same on every host."""
    return int(hashlib.sha256(f"{well}/s{site}".encode()).hexdigest()[:12], 16) % count


class FieldReaders:
    """Reader threads decoding fields, in plate order, into a fixed pool of (1, C, H, W) uint16 buffers."""

    def __init__(self, fields: list[Field], size: tuple[int, int], channels: int, fit: str | None,
                 threads: int, buffers: int, stop: threading.Event):
        self.size, self.fit, self.stop = size, fit, stop
        self.todo, self.lock = iter(fields), threading.Lock()
        self.free: queue.Queue = queue.Queue()
        for _ in range(buffers):
            self.free.put(np.empty((1, channels, *size), dtype=np.uint16))
        self.ready: queue.Queue = queue.Queue()
        self.failures: queue.SimpleQueue = queue.SimpleQueue()
        self.abort = threading.Event()
        self.threads = [threading.Thread(target=self.read_loop, daemon=True) for _ in range(threads)]

    def release(self, buffer: np.ndarray) -> None:
        self.free.put(buffer)

    def take_buffer(self) -> np.ndarray | None:
        while not self.abort.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def next_field(self) -> Field | None:
        with self.lock:
            return next(self.todo, None)

    def read_loop(self) -> None:
        try:
            while not (self.stop.is_set() or self.abort.is_set()):
                field = self.next_field()
                buffer = self.take_buffer() if field else None
                if buffer is None:
                    break
                try:
                    note = read_plate_field(field, self.size, out=buffer[0], fit=self.fit)
                except FieldError as exc:
                    self.release(buffer)
                    self.failures.put(Failure(field.plate, field.well, field.site, Path(exc.path).name, exc.reason))
                    continue
                self.ready.put(((field, note), buffer))
        except BaseException as exc:  # anything but a bad field stops the run, in the main thread
            self.ready.put(exc)
        finally:
            self.ready.put(None)

    def items(self):
        """((field, fit note), buffer) for every readable field, as the readers fill them."""
        for thread in self.threads:
            thread.start()
        running = len(self.threads)
        while running:
            item = self.ready.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item

    def close(self) -> None:
        self.abort.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join()


def versions() -> dict:
    import openvino
    import pyarrow
    import tifffile

    return {"mcnn-appliance": appliance.__version__, "openvino": openvino.get_version(), "numpy": np.__version__,
            "pyarrow": pyarrow.__version__, "tifffile": tifffile.__version__, "python": platform.python_version()}


def run_pipeline(classifier: Classifier, todo: list[Field], store: ChunkStore, *, fit: str | None,
                 embeddings: bool, stop: threading.Event, progress, readers: int,
                 chunk_fields: int) -> tuple[list[Failure], int]:
    """Read and classify todo, committing chunks as fields finish; returns the read failures and fields processed."""
    card, start = classifier.card, time.perf_counter()
    rows, vectors, failures, classified, last_commit = [], [], [], 0, start
    # Enough buffers for every reader, plus read-ahead for the requests OpenVINO can take next.
    reader = FieldReaders(todo, classifier.size, len(card.channels), fit, readers,
                          buffers=classifier.requests_in_flight + readers + 1, stop=stop)

    def collect_failures():
        while not reader.failures.empty():
            failures.append(reader.failures.get())

    try:
        for (field, note), probabilities, embedding in classifier.infer_stream(reader.items(), reader.release):
            rows.append(field_row(field, note, probabilities, card.labels, card.channels, card.weights_sha256,
                                  classifier.precision))
            vectors.append(embedding if embeddings else None)
            classified += 1
            collect_failures()
            if len(rows) >= chunk_fields or time.perf_counter() - last_commit > CHUNK_SECONDS:
                store.commit(rows, vectors)
                rows, vectors, last_commit = [], [], time.perf_counter()
            if progress:
                done = classified + len(failures)
                progress(done, len(todo), done / (time.perf_counter() - start))
        store.commit(rows, vectors)
    finally:
        reader.close()
    collect_failures()
    processed = classified + len(failures)
    if progress:
        progress(processed, len(todo), processed / max(time.perf_counter() - start, 1e-9))
    return failures, processed


def write_final(out_dir: Path, store: ChunkStore, failures: list[Failure], card,
                embeddings: bool) -> tuple[dict[str, str], int, int]:
    """The result files from every committed chunk, each field once, in plate order; (files, classified, failed)."""
    final = {}
    for record in store.records:
        final.setdefault(field_key(record), record)
    records = sorted(final.values(), key=row_order)
    failed = sorted((failure_row(f) for f in failures if (f.plate, f.well, f.site) not in final), key=row_order)
    matrix = (np.array([r[EMBEDDING] for r in records], dtype=np.float32).reshape(len(records), -1)
              if embeddings else None)
    fields = [{k: v for k, v in r.items() if k != EMBEDDING} for r in records]
    return write_results(out_dir, fields, failed, card.labels, card.channels, matrix), len(records), len(failed)


def classify_plate(plate_dir: Path, model: Classifier | Path, out_dir: Path | None = None, *, precision: str = "f32",
                   layout: str = "auto", channels: str | None = None, platemap: Path | None = None,
                   fit: str | None = None, shard: tuple[int, int] = (0, 1), force: bool = False,
                   embeddings: bool = False, stop: threading.Event | None = None, progress=None,
                   readers: int = READERS, chunk_fields: int = CHUNK_FIELDS) -> dict:
    """Classify the plate's fields (this shard's) into out_dir; returns the summary, also saved as run.json.

    progress(done, total, fields_per_s) is called as fields finish. When stop is set, the fields
    already read are classified and committed, and the summary says interrupted.
    """
    start = time.perf_counter()
    plate_dir = Path(plate_dir).resolve()
    out_dir = Path(out_dir).resolve() if out_dir else default_out(plate_dir)
    check_out_dir(plate_folder(plate_dir), out_dir)
    index, count = check_shard(shard)
    if chunk_fields < 1 or readers < 1:
        raise ValueError("chunk_fields and readers must be at least 1")
    stop = stop or threading.Event()
    classifier = model if isinstance(model, Classifier) else Classifier(model, precision=precision)
    card = classifier.card
    if channels is None and tuple(card.channels) != CHANNELS:
        raise ModelCardError(f"{classifier.xml}: model takes channels {card.channels}, "
                             f"a BBBC021 plate gives {CHANNELS}")

    discovering = time.perf_counter()
    layout = detect_layout(plate_dir) if layout == "auto" else layout  # recorded as found
    fields, failures = discover_fields(plate_dir, layout=layout, channels=channels, platemap=platemap)
    fields = [f for f in fields if shard_of(f.well, f.site, count) == index]
    failures = [f for f in failures if shard_of(f.well, f.site, count) == index]
    incomplete = len(failures)  # fields found without all their channels
    discovered = time.perf_counter()

    run_key = {"plate": plate_name(plate_dir), "model_weights_sha256": card.weights_sha256, "model_run_id": card.run_id,
               "precision": classifier.precision, "shard": f"{index}/{count}", "layout": layout,
               "channels": channels, "platemap": str(platemap) if platemap else None, "fit": fit,
               "embeddings": embeddings}
    store = ChunkStore(out_dir, run_key, force=force)
    done = {field_key(row) for row in store.records}
    todo = [f for f in fields if (f.plate, f.well, f.site) not in done]

    classifying = time.perf_counter()
    read_failures, processed = run_pipeline(classifier, todo, store, fit=fit, embeddings=embeddings, stop=stop,
                                            progress=progress, readers=readers, chunk_fields=chunk_fields)
    classified = time.perf_counter()
    interrupted = processed < len(todo)
    files, records, failed = write_final(out_dir, store, failures + read_failures, card, embeddings)
    new = len(store.records) - len(done)
    summary = {
        "plate": plate_name(plate_dir), "plate_dir": str(plate_dir), "out": str(out_dir), "layout": layout,
        "shard": f"{index}/{count}", "precision": classifier.precision, "fit": fit,
        "model": {"xml": str(classifier.xml), "run_id": card.run_id, "weights_sha256": card.weights_sha256,
                  "labels": list(card.labels)},
        "versions": versions(),
        "counts": {"fields": len(fields) + incomplete,
                   "classified": records, "failed": failed, "skipped_done": len(fields) - len(todo)},
        "timings": {"discover_s": round(discovered - discovering, 3), "classify_s": round(classified - classifying, 3),
                    "total_s": round(time.perf_counter() - start, 3)},
        "fields_per_s": round(new / (classified - classifying), 3) if classified > classifying else 0.0,
        "interrupted": interrupted,
        "files": files,
        "run_key": run_key,
    }
    write_json(out_dir / RUN_JSON, summary)
    if not interrupted:
        store.remove()
    summary["files"]["report"] = Path(write_report(out_dir)).name
    write_json(out_dir / RUN_JSON, summary)
    return summary

"""Classify a whole plate folder: discover fields, decode them while OpenVINO infers, commit as we go.

The pipeline: reader threads (appliance.field_readers) decode the next fields' TIFFs straight into
a fixed pool of uint16 buffers; the main thread hands each filled buffer to the Classifier's AsyncInferQueue (THROUGHPUT
hint, the plugin's optimal number of requests in flight), which copies it into a free request
(one memcpy) and the buffer goes back to the readers. The IR takes raw uint16 and does the type
conversion and normalisation itself, so Python never converts a pixel after decoding.
Classified fields are committed in chunks (appliance.chunks) as they finish, so a rerun after a
crash skips them; at the end one PlateResults is built from the chunks and written once
(appliance.result_files), its report included.
A field that cannot be read becomes a failure and the plate goes on; only problems with the
plate folder, the model or the results folder stop the run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

import appliance
from appliance.chunks import ChunkStore
from appliance.field_readers import FieldReaders
from appliance.files import lock_folder
from appliance.gallery import GalleryKeeper, read_gallery
from appliance.inference import Classifier
from appliance.layouts.base import CHANNELS, Failure, Field
from appliance.model_card import ModelCardError
from appliance.plate import check_field_sizes, detect_layout, discover_fields, plate_name, plate_root
from appliance.result_files import read_results, read_summary, write_results
from appliance.result_rows import failure_row, field_key, field_row, row_order
from appliance.results import GALLERY_NPZ, SUMMARY_JSON, PlateResults, ResultsError, utc_now
from appliance.wells import format_of

CHUNK_FIELDS = 64  # fields per committed chunk; at most this many (or CHUNK_SECONDS' worth) are redone after a crash
CHUNK_SECONDS = 30.0
READERS = 2  # decoding threads; TIFF reading releases the GIL
LOCK = ".classify.lock"  # in --out: one classify run at a time writes there


def default_out(plate_dir: Path) -> Path:
    """results/<plate> under the working directory: never a plate, never inside the imager's tree."""
    return Path.cwd() / "results" / plate_name(plate_dir)


def check_out_dir(plate_dir: Path, out_dir: Path) -> None:
    # Results inside the plate would mix with the images and be rescanned next time.
    if out_dir == plate_dir or plate_dir in out_dir.parents:
        raise ValueError(f"{out_dir}: the output folder must not be inside the plate folder {plate_dir}")


def parse_shard(text: str, environ=os.environ) -> tuple[int, int]:
    """'I/N' -> (I, N), I counted from 0; 'auto': this task's shard of a Slurm job array."""
    if text == "auto":
        return slurm_array_shard(environ)
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r}: expected I/N, e.g. 0/4 (I from 0 to N-1)") from None
    return check_shard((index, count))


def slurm_array_shard(environ) -> tuple[int, int]:
    """(I, N) from Slurm's array variables: `sbatch --array=0-3` runs tasks 0..3, each one shard of 4.
    The array must be one contiguous range (no step, no list with gaps): each task is a shard of
    MIN..MAX, which must hold SLURM_ARRAY_TASK_COUNT tasks, or fields would be left out."""
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX")
    missing = [name for name in names if not environ.get(name, "").strip()]
    if missing:
        raise ValueError(f"--shard auto: not a task of a Slurm job array ({', '.join(missing)} unset); use I/N")
    try:
        task, count, first, last = (int(environ[name]) for name in names)
    except ValueError:
        raise ValueError(f"--shard auto: Slurm's array variables are not whole numbers: {names}") from None
    if last - first + 1 != count:
        raise ValueError(
            f"--shard auto: the array {first}-{last} holds {count} tasks, not {last - first + 1}: give sbatch "
            "one range without a step (--array=0-N), or run each shard with --shard I/N"
        )
    return check_shard((task - first, count))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected I/N with N >= 1 and I from 0 to N-1")
    return index, count


def shard_of(well: str, site: int, count: int) -> int:
    """Which of count shards a field belongs to: a hash of well and site, the same on every host."""
    return int(hashlib.sha256(f"{well}/s{site}".encode()).hexdigest()[:12], 16) % count


def plate_fingerprint(root: Path, fields: list[Field], failures: list[Failure]) -> str:
    """SHA-256 of the plate's field list: each field's well, site and files (path inside the plate, size), and
    the fields found incomplete; what makes two plates of one folder name, or a plate copied anew, differ."""

    def file(path) -> str:
        path = Path(path)
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)  # a manifest's: anywhere
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        return f"{name}:{size}"

    lines = sorted(f"{f.well}/{f.site}:" + ",".join(map(file, dict.fromkeys(f.paths))) for f in fields)
    lines += sorted(f"{f.well}/{f.site}: incomplete {f.file}" for f in failures)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def versions() -> dict:
    import openvino
    import pyarrow
    import tifffile

    return {
        "mcnn-appliance": appliance.__version__,
        "openvino": openvino.get_version(),
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "tifffile": tifffile.__version__,
        "python": platform.python_version(),
    }


def run_pipeline(
    classifier: Classifier,
    todo: list[Field],
    store: ChunkStore,
    gallery: GalleryKeeper,
    *,
    fit: str | None,
    embeddings: bool,
    stop: threading.Event,
    progress,
    readers: int,
    chunk_fields: int,
) -> tuple[list[Failure], int]:
    """Read and classify todo, committing chunks as fields finish; returns the read failures and fields processed.

    gallery gets a thumbnail of each field while its decoded planes are in memory, then its call."""
    card, start = classifier.card, time.perf_counter()
    rows, vectors, failures, classified, last_commit = [], [], [], 0, start
    # Enough buffers for every reader, plus read-ahead for the requests OpenVINO can take next.
    reader = FieldReaders(
        todo,
        classifier.size,
        len(card.channels),
        fit,
        readers,
        buffers=classifier.requests_in_flight + readers + 1,
        stop=stop,
        # the thumbnail is made in the reader thread, off the loop that feeds inference
        after_read=lambda field, planes: gallery.read((field.plate, field.well, field.site), planes),
    )

    reference = card.reference  # the training embeddings' summary, when the model carries one

    def collect_failures():
        while not reader.failures.empty():
            failures.append(reader.failures.get())

    try:
        for (field, note), probabilities, embedding in classifier.infer_stream(reader.items(), reader.release):
            distance = float(reference.distances(embedding)[0]) if reference is not None else None
            row = field_row(
                field,
                note,
                probabilities,
                card.labels,
                card.channels,
                card.weights_sha256,
                classifier.precision,
                distance,
            )
            gallery.classified(field_key(row), row["Classify_Class"], row["Classify_Confidence"])
            rows.append(row)
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


def plate_results(
    out_dir: Path, store: ChunkStore, failures: list[Failure], card, run: dict, gallery: GalleryKeeper
) -> PlateResults:
    """The plate's results from every committed chunk; a field that failed once but is now classified is no failure."""
    fields, embeddings = store.committed()
    classified = {field_key(row) for row in fields}
    failed = sorted((row for row in map(failure_row, failures) if field_key(row) not in classified), key=row_order)
    thumbnails = {key: thumb for key, thumb in gallery.thumbnails.items() if key in classified}
    if card.reference is not None:
        distances = [row["Classify_Distance"] for row in fields if row.get("Classify_Distance") is not None]
        run["distance"] = {**card.reference.summary(), "flagged": sum(d > card.reference.threshold for d in distances)}
    return PlateResults(out_dir, card.labels, card.channels, fields, failed, run, embeddings, thumbnails)


def resumed_gallery(out_dir: Path, records: list[dict]) -> GalleryKeeper:
    """A keeper holding the thumbnails an earlier, interrupted run of these records left (none after a crash)."""
    gallery = GalleryKeeper()
    try:
        earlier = read_gallery(out_dir / GALLERY_NPZ) if records and (out_dir / GALLERY_NPZ).is_file() else {}
    except (OSError, ValueError):
        earlier = {}  # only pictures: the fields themselves are in the chunks
    for row in records:
        thumb = earlier.get(field_key(row))
        if thumb is not None:
            gallery.offer(field_key(row), row["Classify_Class"], row["Classify_Confidence"], thumb)
    return gallery


def finished_earlier(out_dir: Path, run_key: dict, fields: list[Field]) -> dict | None:
    """The summary of an earlier run that classified exactly these fields with the same run key, none
    failed: a rerun then has nothing to do and leaves that run's files (figures, report) as they are."""
    try:
        earlier = read_results(out_dir) if (out_dir / SUMMARY_JSON).is_file() else None
    except ResultsError:
        return None
    if earlier is None or earlier.failures or earlier.run.get("interrupted") or earlier.run.get("run_key") != run_key:
        return None
    if {field_key(row) for row in earlier.fields} != {(f.plate, f.well, f.site) for f in fields}:
        return None
    return {**read_summary(out_dir / SUMMARY_JSON), "nothing_to_do": True}


def earlier_summary(out_dir: Path) -> dict | None:
    try:
        return read_summary(out_dir / SUMMARY_JSON)
    except ResultsError:
        return None


def figures(previous: dict | None, new: int, timings: dict, fields_per_s: float) -> dict:
    """This run's timings and fields/s; a rerun that classified no new field (only failures tried again)
    keeps the earlier run's figures and is listed under reruns, rather than reporting 0 fields/s."""
    if new or not previous or "fields_per_s" not in previous:
        return {"timings": timings, "fields_per_s": fields_per_s}
    reruns = [*previous.get("reruns", []), {"finished": utc_now(), "timings": timings}]
    return {"timings": previous["timings"], "fields_per_s": previous["fields_per_s"], "reruns": reruns}


def classify_plate(
    plate_dir: Path,
    model: Classifier | Path,
    out_dir: Path | None = None,
    *,
    precision: str = "auto",
    layout: str = "auto",
    channels: str | None = None,
    platemap: Path | None = None,
    fit: str | None = None,
    plane: int | None = None,
    timepoint: int | None = None,
    project: str | None = None,
    shard: tuple[int, int] = (0, 1),
    force: bool = False,
    embeddings: bool = False,
    plate_wells: int | None = None,
    cpa: bool = False,
    stop: threading.Event | None = None,
    progress=None,
    readers: int = READERS,
    chunk_fields: int = CHUNK_FIELDS,
) -> dict:
    """Classify the plate's fields (this shard's) into out_dir; returns the summary, also saved as summary.json.

    progress(done, total, fields_per_s) is called as fields finish. When stop is set, the fields
    already read are classified and committed, and the summary says interrupted.
    """
    start = time.perf_counter()
    plate_dir = Path(plate_dir).resolve()
    out_dir = Path(out_dir).resolve() if out_dir else default_out(plate_dir)
    check_out_dir(plate_root(plate_dir), out_dir)
    index, count = check_shard(shard)
    if chunk_fields < 1 or readers < 1:
        raise ValueError("chunk_fields and readers must be at least 1")
    if plate_wells is not None:
        format_of(plate_wells)  # a plate size no plate has stops the run before any field is read
    stop = stop or threading.Event()
    classifier = model if isinstance(model, Classifier) else Classifier(model, precision=precision)
    card = classifier.card
    if channels is None and tuple(card.channels) != CHANNELS:
        raise ModelCardError(
            f"{classifier.xml}: model takes channels {card.channels}, a BBBC021 plate gives {CHANNELS}"
        )

    discovering = time.perf_counter()
    layout = detect_layout(plate_dir) if layout == "auto" else layout  # recorded as found
    fields, failures = discover_fields(
        plate_dir, layout, channels, platemap, plane=plane, timepoint=timepoint, project=project
    )
    fingerprint = plate_fingerprint(plate_root(plate_dir), fields, failures)  # the whole plate's: every shard's
    fields = [f for f in fields if shard_of(f.well, f.site, count) == index]
    failures = [f for f in failures if shard_of(f.well, f.site, count) == index]
    incomplete = len(failures)  # fields found without all their channels
    check_field_sizes(fields, classifier.size, fit)  # a model for other fields: one message, not one per field
    discovered = time.perf_counter()

    plate = plate_name(plate_dir)
    run_key = {
        "plate": plate,
        "model_weights_sha256": card.weights_sha256,
        "model_run_id": card.run_id,
        "precision": classifier.precision,
        "shard": f"{index}/{count}",
        "layout": layout,
        "channels": channels,
        "platemap": str(platemap) if platemap else None,
        "fit": fit,
        "plane": plane,
        "timepoint": timepoint,
        "project": project,
        "embeddings": embeddings,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with lock_folder(out_dir, LOCK, "another classify run"):  # released however the run ends
        earlier = None if force or incomplete else finished_earlier(out_dir, run_key, fields)
        if earlier:
            return earlier
        previous = None if force else earlier_summary(out_dir)
        store = ChunkStore(out_dir, run_key, force=force)
        done = {field_key(row) for row in store.records}
        todo = [f for f in fields if (f.plate, f.well, f.site) not in done]

        gallery = resumed_gallery(out_dir, store.records)

        classifying = time.perf_counter()
        read_failures, processed = run_pipeline(
            classifier,
            todo,
            store,
            gallery,
            fit=fit,
            embeddings=embeddings,
            stop=stop,
            progress=progress,
            readers=readers,
            chunk_fields=chunk_fields,
        )
        classified = time.perf_counter()
        new = len(store.records) - len(done)
        results = plate_results(
            out_dir,
            store,
            failures + read_failures,
            card,
            {
                "plate": plate,
                "plate_dir": str(plate_dir),
                "plate_fingerprint": fingerprint,
                "layout": layout,
                "shard": f"{index}/{count}",
                "precision": classifier.precision,
                "precision_reason": classifier.choice.reason,
                "fit": fit,
                "model": {
                    "xml": str(classifier.xml),
                    "run_id": card.run_id,
                    "weights_sha256": card.weights_sha256,
                    "input_height": card.input_height,
                    "input_width": card.input_width,
                },
                "plate_wells": plate_wells,
                "cpa": cpa,
                "versions": versions(),
                "counts": {"fields": len(fields) + incomplete, "skipped_done": len(fields) - len(todo)},
                **figures(
                    previous,
                    new,
                    {
                        "discover_s": round(discovered - discovering, 3),
                        "classify_s": round(classified - classifying, 3),
                        "total_s": round(time.perf_counter() - start, 3),
                    },
                    round(new / (classified - classifying), 3) if classified > classifying else 0.0,
                ),
                "interrupted": processed < len(todo),
                "finished": utc_now(),
                "run_key": run_key,
                "set_aside": store.set_aside,
            },
            gallery,
        )
        summary = write_results(results)
        if not summary["interrupted"]:
            store.remove()  # only now: until summary.json is written, the chunks are the results
        return summary

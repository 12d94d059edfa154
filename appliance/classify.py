"""Classify a whole plate folder: discover fields, read and infer in batches, write the CSVs.

Reading TIFFs and inference overlap: the next batch is read in a background thread while
the current one runs through OpenVINO. A field that cannot be read becomes a Failure and
the plate goes on; only problems with the plate folder or the model stop the run.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from appliance.imageio import FieldError, read_field
from appliance.inference import Classifier
from appliance.metadata import CHANNELS
from appliance.model_card import ModelCardError
from appliance.plate import Failure, PlateField, discover_fields
from appliance.results import write_results


def read_batch(fields: list[PlateField], size: tuple[int, int]):
    """The readable fields of a batch as one uint16 array, and a Failure for each other one."""
    raw = np.empty((len(fields), len(CHANNELS), *size), dtype=np.uint16)
    ok, failures = [], []
    for field in fields:
        try:
            read_field(field.paths, size, out=raw[len(ok)])
            ok.append(field)
        except FieldError as exc:
            failures.append(Failure(field.plate, field.well, field.site, Path(exc.path).name, exc.reason))
    return ok, raw[:len(ok)], failures


def classify_plate(plate_dir: Path, model: Classifier | Path, out_dir: Path, batch_size: int = 2,
                   precision: str = "f32", progress=None, stop: threading.Event | None = None) -> dict:
    """stop: when set, the batch in flight is finished and written, and the summary says "interrupted"."""
    start = time.perf_counter()
    plate_dir, out_dir = Path(plate_dir).resolve(), Path(out_dir).resolve()
    # Results inside the plate would mix with the images and be rescanned next time.
    if out_dir == plate_dir or plate_dir in out_dir.parents:
        raise ValueError(f"{out_dir}: the output folder must not be inside the plate folder {plate_dir}")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    classifier = model if isinstance(model, Classifier) else Classifier(model, precision=precision)
    if tuple(classifier.card.channels) != CHANNELS:
        raise ModelCardError(f"{classifier.xml}: model takes channels {classifier.card.channels}, "
                             f"a BBBC021 plate gives {CHANNELS}")
    fields, failures = discover_fields(plate_dir)

    batches = [fields[i:i + batch_size] for i in range(0, len(fields), batch_size)]
    classified, probabilities, done, interrupted = [], [], 0, False
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read_batch, batches[0], classifier.size) if batches else None
        for i in range(len(batches)):
            ok, raw, failed = pending.result()
            if stop is not None and stop.is_set():
                interrupted = True  # the batch read ahead is dropped; its fields count as not reached
                break
            if i + 1 < len(batches):
                pending = reader.submit(read_batch, batches[i + 1], classifier.size)
            if ok:
                probabilities.append(classifier.predict(raw)[0])
                classified += ok
            failures += failed
            done += len(batches[i])
            if progress:
                progress(done, len(fields))

    failures.sort(key=lambda f: (len(f.well), f.well, f.site))
    probs = np.concatenate(probabilities) if probabilities else np.empty((0, len(classifier.labels)))
    files = write_results(out_dir, classified, probs, classifier.labels, failures, classifier.precision)
    seconds = time.perf_counter() - start
    return {
        "plate": plate_dir.name,
        "fields": len(classified) + len(failures),
        "classified": len(classified),
        "failed": len(failures),
        "seconds": round(seconds, 2),
        "fields_per_s": round(len(classified) / seconds, 3) if seconds else 0.0,
        "out": {name: str(path) for name, path in files.items()},
        "precision": classifier.precision,
        "interrupted": interrupted,
    }

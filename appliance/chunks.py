"""Results committed as they are produced, so a crash, a kill -9 or a stop loses no finished field.

`OUT/.partial/` holds `run-key.json` (what produced the results: model hash, precision, shard...)
and chunk files `chunk-<run>-<n>.parquet`, each one the field rows of the fields classified since
the last chunk (plus their embedding when asked for), written through appliance.files (flushed,
renamed, folder synced). <run> is unique to each run (its start time, process id and a random
tag) and <n> counts up within it, so a chunk never takes the name of another, whatever was
removed or whoever else writes. A rerun of the same command reads the chunks back and skips
those fields; a chunk that cannot be read is named, set aside as `.damaged` and its fields are
classified again. A rerun with another model, precision or shard is refused, never mixed.
Fields that failed are not kept: a rerun tries them again (the file may have been fixed), so only
classified fields are chunked. When a complete run has written its final files, `.partial/` is
removed; a later rerun then takes the results in the folder (read_results) as its first chunk,
or, if a file of them is damaged, sets it aside and classifies every field again, saying so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.files import WriteError, set_aside, sync, write_json
from appliance.result_files import finish_incoming, read_results, write_parquet
from appliance.result_rows import field_key, row_order
from appliance.results import SUMMARY_JSON, ResultsError

PARTIAL, RUN_KEY = ".partial", "run-key.json"
EMBEDDING = "Embedding"  # the chunk's extra column: the field's embedding vector, or null


def differences(old: dict, new: dict) -> str:
    return "; ".join(
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    )


def run_tag() -> str:
    """This run's part of its chunk names: sorts by start time, unique by process and a random tag."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{secrets.token_hex(3)}"


class ChunkStore:
    """`set_aside`: a message per damaged file found and set aside (its fields are classified again)."""

    def __init__(self, out_dir: Path, run_key: dict, force: bool = False):
        self.out_dir, self.dir, self.run_key = Path(out_dir), Path(out_dir) / PARTIAL, run_key
        self.tag, self.next_number, self.set_aside = run_tag(), 1, []
        try:
            finish_incoming(self.out_dir)  # results a crash left half moved in, before they are read back
            self.dir.mkdir(parents=True, exist_ok=True)
            sync(self.out_dir)  # the folder's entry, so that a power cut cannot lose the chunks in it
            for stale in self.dir.glob(".*.tmp*"):  # a write a kill -9 cut short
                stale.unlink()
            if force:
                for chunk in self.chunks():
                    chunk.unlink()
                (self.dir / RUN_KEY).unlink(missing_ok=True)
        except OSError as exc:
            raise WriteError(
                f"{self.dir}: cannot write ({exc.strerror or exc}); results already there are intact"
            ) from exc
        self.records = [] if force else self.read_committed()
        if force:
            write_json(self.dir / RUN_KEY, self.run_key)

    def chunks(self) -> list[Path]:
        return sorted(self.dir.glob("chunk-*.parquet"))

    def refuse_other_run(self, old: dict, source: Path) -> None:
        if old != self.run_key:
            raise ResultsError(
                f"{self.out_dir} holds results of another run ({source.name}: "
                f"{differences(old, self.run_key)}); rerun with --force to redo every field, "
                "or choose another --out"
            )

    def read_chunk(self, chunk: Path) -> list[dict]:
        """The chunk's rows; a chunk that cannot be read (cut short, damaged) is set aside: its fields are redone."""
        try:
            return pq.read_table(chunk).to_pylist()
        except (OSError, ValueError, pa.ArrowException) as exc:
            aside = set_aside(chunk)
            self.set_aside.append(f"{chunk}: unreadable ({exc}); set aside as {aside.name}, its fields redone")
            return []

    def read_earlier_results(self) -> list[dict]:
        """The field rows (with their embedding) of a finished or stopped earlier run's results in the folder;
        a damaged file of them is set aside and nothing is taken (every field is classified again)."""
        try:
            earlier = read_results(self.out_dir)
        except ResultsError as exc:
            if exc.path is None:  # no set of ours (a foreign or unreadable summary.json): refused, untouched
                raise
            if exc.path.exists():
                aside = set_aside(exc.path)
                what = f"set aside as {aside.name}"
            else:
                what = "missing"
            self.set_aside.append(f"{exc}; {what}: the earlier results cannot be used, every field is classified again")
            return []
        self.refuse_other_run(earlier.run.get("run_key", {}), self.out_dir / SUMMARY_JSON)
        vectors = earlier.embeddings if self.run_key.get("embeddings") else None
        return [
            {**row, EMBEDDING: None if vectors is None else vectors[i].tolist()} for i, row in enumerate(earlier.fields)
        ]

    def read_committed(self) -> list[dict]:
        """Field rows already committed here (with their embedding), after checking they are this run's."""
        key_path = self.dir / RUN_KEY
        if key_path.is_file():
            self.refuse_other_run(json.loads(key_path.read_text()), key_path)
            return [row for chunk in self.chunks() for row in self.read_chunk(chunk)]
        rows = self.read_earlier_results() if (self.out_dir / SUMMARY_JSON).is_file() else []
        if rows:  # before the run key: a crash in between only makes the next run fold them in again
            self.commit_rows(rows, number=0)
        write_json(key_path, self.run_key)
        return rows

    def commit_rows(self, rows: list[dict], number: int) -> Path:
        table = pa.Table.from_pylist(rows)
        return write_parquet(self.dir / f"chunk-{self.tag}-{number:06d}.parquet", table)

    def commit(self, rows: list[dict], embeddings: list[np.ndarray | None]) -> None:
        """Commit classified fields (field rows, embedding or None each) as the next chunk."""
        if not rows:
            return
        records = [
            {**row, EMBEDDING: None if e is None else e.astype(np.float32).tolist()}
            for row, e in zip(rows, embeddings, strict=True)
        ]
        self.commit_rows(records, self.next_number)
        self.next_number += 1
        self.records += records

    def committed(self) -> tuple[list[dict], np.ndarray | None]:
        """Every committed field once (its first commit), in plate order, and their embeddings as a
        (fields, width) matrix, or None when the run key asks for none."""
        final: dict[tuple, dict] = {}
        for record in self.records:
            final.setdefault(field_key(record), record)
        records = sorted(final.values(), key=row_order)
        fields = [{k: v for k, v in record.items() if k != EMBEDDING} for record in records]
        if not self.run_key.get("embeddings"):
            return fields, None
        vectors = np.array([record[EMBEDDING] for record in records], dtype=np.float32)
        return fields, vectors if records else np.empty((0, 0), dtype=np.float32)

    def remove(self) -> None:
        """After the final files of a complete run are in place."""
        shutil.rmtree(self.dir, ignore_errors=True)
        sync(self.out_dir)

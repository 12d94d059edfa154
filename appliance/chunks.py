"""Results committed as they are produced, so a crash, a kill -9 or a stop loses no finished field.

`OUT/.partial/` holds `run-key.json` (what produced the results: model hash, precision, shard...)
and numbered chunk files `chunk-000001.parquet`, each one the field rows of the fields classified
since the last chunk (plus their embedding when asked for), written to a temporary name and
renamed. A rerun of the same command reads the chunks back and skips those fields; a rerun with
another model, precision or shard is refused, never mixed. Fields that failed are not kept:
a rerun tries them again (the file may have been fixed), so only classified fields are chunked.
When a complete run has written its final files, `.partial/` is removed; a later rerun then
takes the results in the folder (read_results) as its first chunk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.files import WriteError, write_json
from appliance.result_files import read_results, write_parquet
from appliance.result_rows import field_key, row_order
from appliance.results import SUMMARY_JSON, ResultsError

PARTIAL, RUN_KEY = ".partial", "run-key.json"
EMBEDDING = "Embedding"  # the chunk's extra column: the field's embedding vector, or null


def differences(old: dict, new: dict) -> str:
    return "; ".join(
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    )


class ChunkStore:
    def __init__(self, out_dir: Path, run_key: dict, force: bool = False):
        self.out_dir, self.dir, self.run_key = Path(out_dir), Path(out_dir) / PARTIAL, run_key
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
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
        self.next_number = len(self.chunks()) + 1

    def chunks(self) -> list[Path]:
        return sorted(self.dir.glob("chunk-*.parquet"))

    def refuse_other_run(self, old: dict, source: Path) -> None:
        if old != self.run_key:
            raise ResultsError(
                f"{self.out_dir} holds results of another run ({source.name}: "
                f"{differences(old, self.run_key)}); rerun with --force to redo every field, "
                "or choose another --out"
            )

    def read_committed(self) -> list[dict]:
        """Field rows already committed here (with their embedding), after checking they are this run's."""
        key_path = self.dir / RUN_KEY
        if key_path.is_file():
            self.refuse_other_run(json.loads(key_path.read_text()), key_path)
            return [row for chunk in self.chunks() for row in pq.read_table(chunk).to_pylist()]
        rows = []
        if (self.out_dir / SUMMARY_JSON).is_file():  # a finished (or stopped) earlier run, its chunks folded in
            earlier = read_results(self.out_dir)
            self.refuse_other_run(earlier.run.get("run_key", {}), self.out_dir / SUMMARY_JSON)
            vectors = earlier.embeddings if self.run_key.get("embeddings") else None
            rows = [
                {**row, EMBEDDING: None if vectors is None else vectors[i].tolist()}
                for i, row in enumerate(earlier.fields)
            ]
        if rows:  # before the run key: a crash in between only makes the next run fold them in again
            self.commit_rows(rows, number=0)
        write_json(key_path, self.run_key)
        return rows

    def commit_rows(self, rows: list[dict], number: int) -> Path:
        table = pa.Table.from_pylist(rows)
        return write_parquet(self.dir / f"chunk-{number:06d}.parquet", table)

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

"""The reader pool: every readable field decoded once into a pooled buffer, a bad one a failure, a bug raised."""

import threading

import numpy as np
import pytest
import tifffile

import appliance.field_readers
from appliance.field_readers import FieldReaders
from appliance.plate import discover_fields
from tests.conftest import CHANNELS, SIZE, truncate, write_plate


def test_readable_fields_fill_pooled_buffers_and_a_bad_one_becomes_a_failure(tmp_path):
    written = write_plate(tmp_path / "plate", wells=("B02", "B03"), sites=(1, 2, 3))
    truncate(written[("B03", 2)]["Tubulin"])
    fields, _ = discover_fields(tmp_path / "plate")
    readers = FieldReaders(fields, SIZE, len(CHANNELS), None, threads=2, buffers=2, stop=threading.Event())
    seen, buffers = {}, set()
    try:
        for (field, _), buffer in readers.items():
            seen[(field.well, field.site)] = buffer[0].copy()
            buffers.add(id(buffer))
            readers.release(buffer)
    finally:
        readers.close()
    assert sorted(seen) == sorted(key for key in written if key != ("B03", 2)) and len(buffers) <= 2
    raw = np.stack([tifffile.imread(written[("B02", 3)][c]) for c in CHANNELS])
    np.testing.assert_array_equal(seen[("B02", 3)], raw)  # the buffer holds its own field, not a neighbour's
    (failure,) = [readers.failures.get() for _ in range(readers.failures.qsize())]
    assert (failure.well, failure.site, failure.file) == ("B03", 2, written[("B03", 2)]["Tubulin"].name)


def test_anything_but_a_bad_field_stops_the_run_in_the_consumer(tmp_path, monkeypatch):
    write_plate(tmp_path / "plate", wells=("B02",), sites=(1, 2))
    fields, _ = discover_fields(tmp_path / "plate")

    def broken(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(appliance.field_readers, "read_plate_field", broken)
    readers = FieldReaders(fields, SIZE, len(CHANNELS), None, threads=1, buffers=1, stop=threading.Event())
    with pytest.raises(MemoryError, match="out of memory"):
        try:
            list(readers.items())
        finally:
            readers.close()

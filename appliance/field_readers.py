"""Reader threads that decode a plate's fields into a fixed pool of buffers while OpenVINO infers.

Each field's TIFFs are decoded straight into a free (1, C, H, W) uint16 buffer; the consumer hands
the filled buffer to inference and gives it back with `release`, so memory stays bounded by the
pool whatever the plate's size. A field that cannot be read becomes a Failure and reading goes on;
anything else a reader raises stops the run, raised again in the consumer's thread.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from appliance.imageio import FieldError, read_plate_field
from appliance.layouts.base import Failure, Field


class FieldReaders:
    """Reader threads decoding fields, in plate order, into a fixed pool of (1, C, H, W) uint16 buffers."""

    def __init__(
        self,
        fields: list[Field],
        size: tuple[int, int],
        channels: int,
        fit: str | None,
        threads: int,
        buffers: int,
        stop: threading.Event,
        after_read=lambda field, planes: None,
    ):
        """after_read(field, planes) runs in the reader thread on each field decoded, before it is handed on."""
        self.size, self.fit, self.stop, self.after_read = size, fit, stop, after_read
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
                self.after_read(field, buffer[0])
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

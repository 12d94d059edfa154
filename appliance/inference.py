"""The exported model on OpenVINO's CPU plugin: raw uint16 fields in, probabilities and embeddings out.

The model card travels in the IR's rt_info; a model without one, or whose card disagrees with
the network's own shapes or precision, is refused before any field is classified.
Precision is chosen at run time: f32 or bf16 run model.xml, int8 runs model-int8.xml; auto picks
one for this export and this CPU (appliance/precision.py). Compiled models are cached on disk
(OpenVINO's CACHE_DIR, see model_cache_dir), so a second run skips the compile.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from appliance.model_card import (
    KEYS,
    OPTIONAL_KEYS,
    WEIGHTS_FILE_SHA256,
    ModelCard,
    ModelCardError,
    check_matches_run,
    file_sha256,
)
from appliance.precision import MODEL_INT8_XML, MODEL_XML, choose_precision
from appliance.threads import compute_threads

PROBABILITIES, EMBEDDING = "probabilities", "embedding"
# What the CPU plugin computes in. An INT8 model runs its quantized layers in int8 and anything
# left unquantized in f32, as the export's accuracy gate measured it.
PRECISIONS = {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "int8": ov.Type.f32}


def resolve_model(model: Path | str, precision: str = "f32") -> Path:
    """A folder holding model.xml (model-int8.xml for int8), or the .xml itself."""
    model = Path(model)
    if model.is_dir() and precision == "int8":
        xml = model / MODEL_INT8_XML
        if not xml.is_file():
            raise FileNotFoundError(f"{xml}: no INT8 model here; export one with `mcnn-appliance export RUN --int8`")
        return xml
    xml = model / MODEL_XML if model.is_dir() else model
    if not xml.is_file():
        raise FileNotFoundError(f"{xml}: no OpenVINO model here (expected a folder with {MODEL_XML} or an .xml file)")
    return xml


def first_line(exc: Exception) -> str:
    """OpenVINO's exceptions carry a C++ trace after their message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0]


def is_quantized(network: ov.Model) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in network.get_ops())


def model_cache_dir() -> Path | None:
    """Where compiled models are cached: MCNN_MODEL_CACHE (empty or "off": no cache), else the user's cache."""
    given = os.environ.get("MCNN_MODEL_CACHE")
    if given is not None:
        return None if given.strip().lower() in ("", "off", "none") else Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mcnn-appliance" / "openvino"


def compile_model(
    network: ov.Model, precision: str, threads: int, hint: str | None = None, cache: Path | None = None
) -> ov.CompiledModel:
    """The CPU plugin configuration every caller shares; hint is LATENCY or THROUGHPUT."""
    config = {hints.inference_precision: PRECISIONS[precision], props.inference_num_threads: threads}
    if hint:
        config[hints.performance_mode] = getattr(hints.PerformanceMode, hint)
    if cache is not None:
        try:  # a cache that cannot be written costs a compile, never a run
            cache.mkdir(parents=True, exist_ok=True)
            config[props.cache_dir] = str(cache)
        except OSError:
            pass
    return ov.Core().compile_model(network, "CPU", config)


def read_card(network: ov.Model, source: str) -> ModelCard:
    meta = {
        key: network.get_rt_info(["model_info", key]).astype(str)
        for key in (*KEYS, *OPTIONAL_KEYS)
        if network.has_rt_info(["model_info", key])
    }
    return ModelCard.from_metadata(meta, source=source)


def check_card(network: ov.Model, card: ModelCard, source: str) -> None:
    """The card must describe this network: same input shape, one probability per label."""
    names = {name for output in network.outputs for name in output.get_names()}
    if not {PROBABILITIES, EMBEDDING} <= names:
        raise ModelCardError(f"{source}: outputs {sorted(names)}, expected {PROBABILITIES} and {EMBEDDING}")
    shape = network.input(0).get_partial_shape()
    expected = (len(card.channels), *card.size)
    if shape.rank.get_length() != 4 or any(shape[i + 1] != d for i, d in enumerate(expected)):
        raise ModelCardError(f"{source}: network input is {shape}, the card says (N, {', '.join(map(str, expected))})")
    classes = network.output(PROBABILITIES).get_partial_shape()[-1]
    if classes != len(card.labels):
        raise ModelCardError(f"{source}: network gives {classes} probabilities, the card has {len(card.labels)} labels")
    width = network.output(EMBEDDING).get_partial_shape()[-1]
    if card.reference is not None and width != card.reference.centroids.shape[1]:
        raise ModelCardError(
            f"{source}: network gives {width}-feature embeddings, the card's training reference has "
            f"{card.reference.centroids.shape[1]}"
        )
    if card.precision not in ("f32", "int8") or (card.precision == "int8") != is_quantized(network):
        raise ModelCardError(
            f"{source}: the card says precision {card.precision}, the network is "
            + ("quantized (int8)" if is_quantized(network) else "not quantized (f32 weights)")
        )


def check_weights_file(network: ov.Model, xml: Path) -> str | None:
    """The weights file must be the one export wrote: its SHA-256 against the card's. A mismatch (a
    damaged or altered model.bin) is a ModelCardError; a model exported before hashes were recorded
    gives a warning to print, and is used."""
    weights = xml.with_suffix(".bin")
    if not network.has_rt_info(["model_info", WEIGHTS_FILE_SHA256]):
        return (
            f"{xml}: exported without the SHA-256 of {weights.name} (before mcnn-appliance recorded it), so the "
            "weights file cannot be verified; export again to have it checked"
        )
    recorded = network.get_rt_info(["model_info", WEIGHTS_FILE_SHA256]).astype(str)
    found = file_sha256(weights) if weights.is_file() else None
    if found != recorded:
        raise ModelCardError(
            f"{weights}: SHA-256 {found or '(no such file)'} is not the {recorded} its export recorded in "
            f"{xml.name}; the weights file is damaged or was changed: refused"
        )
    return None


def check_precision(card: ModelCard, precision: str, source: str) -> None:
    """int8 runs an INT8 model only, and f32/bf16 a float one: never one silently for the other."""
    if (precision == "int8") != (card.precision == "int8"):
        raise ModelCardError(
            f"{source}: an {card.precision} model cannot run at precision {precision}; "
            + (
                "use --precision int8"
                if card.precision == "int8"
                else f"for int8 use the export folder's {MODEL_INT8_XML}"
            )
        )


class Classifier:
    def __init__(
        self, model: Path | str, precision: str = "auto", threads: int | None = None, cache: Path | None = None
    ):
        if precision not in (*PRECISIONS, "auto"):
            raise ValueError(f"precision {precision!r}: choose one of auto, {', '.join(PRECISIONS)}")
        self.choice = choose_precision(model, precision)  # what auto chose, and why
        precision = self.choice.precision
        self.xml = resolve_model(model, precision)
        if not self.xml.with_suffix(".bin").is_file():
            raise ModelCardError(
                f"{self.xml.with_suffix('.bin')}: no such file; {self.xml.name} needs its weights file beside it"
            )
        try:
            network = ov.Core().read_model(self.xml)
        except RuntimeError as exc:  # OpenVINO's own message names neither the folder nor what is wrong
            raise ModelCardError(f"{self.xml}: OpenVINO cannot read this model: {first_line(exc)}") from None
        self.card = read_card(network, str(self.xml))
        # Verified before compiling: warning is what to print when it cannot be (an older export).
        self.warning = check_weights_file(network, self.xml)
        check_card(network, self.card, str(self.xml))
        check_precision(self.card, precision, str(self.xml))
        check_matches_run(self.card, self.xml.parent, str(self.xml))
        # Threads this process may use (affinity, cgroup quota, MCNN_THREADS), not the host's core count.
        self.threads = threads or compute_threads()
        # THROUGHPUT: several CPU streams, each field of a batch its own request (see predict).
        self._compiled = compile_model(network, precision, self.threads, "THROUGHPUT", cache or model_cache_dir())
        # int8, or the precision the CPU plugin actually runs: bf16 falls back to f32 without hardware
        # support. Read once: get_property waits for running inferences, and classify, which read
        # it for every result row, lost a tenth of its throughput (benchmarks/classify_throughput.py).
        self.precision = (
            "int8" if precision == "int8" else self._compiled.get_property(hints.inference_precision).get_type_name()
        )
        self.requests_in_flight = self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self._requests = [self._compiled.create_infer_request() for _ in range(self.requests_in_flight)]
        # An IR without PrePostProcessor normalisation takes float32 normalised fields.
        self._takes_raw = network.input(0).get_element_type() == ov.Type.u16

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    @property
    def size(self) -> tuple[int, int]:
        return self.card.size

    def predict(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint16 (N, channels, H, W) -> probabilities (N, classes), embeddings (N, 512), float32."""
        expected = (len(self.card.channels), *self.size)
        if raw.ndim != 4 or raw.shape[1:] != expected or raw.dtype != np.uint16:
            raise ValueError(
                f"expected uint16 fields of shape (N, {', '.join(map(str, expected))}), got {raw.dtype} {raw.shape}"
            )
        fields = raw if self._takes_raw else self.card.normalization.apply(raw)
        outputs = [self._compiled.output(PROBABILITIES), self._compiled.output(EMBEDDING)]
        results = [
            np.empty((len(fields), output.get_partial_shape()[1].get_length()), np.float32) for output in outputs
        ]
        # One field per request, as many in flight as the plugin has streams for.
        for start in range(0, len(fields), len(self._requests)):
            busy = list(zip(self._requests, range(start, len(fields))))
            for request, i in busy:
                request.start_async({0: np.ascontiguousarray(fields[i : i + 1])})
            for request, i in busy:
                request.wait()
                for result, output in zip(results, outputs):
                    result[i] = request.get_tensor(output).data[0]
        return results[0], results[1]

    def infer_stream(
        self, items: Iterable[tuple[object, np.ndarray]], release: Callable[[np.ndarray], None] | None = None
    ) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        """Run (key, field) pairs through an AsyncInferQueue; yields (key, probabilities, embedding) as they finish.

        field: one uint16 (1, channels, H, W) array. It is copied into an idle request (waiting for
        one if all are busy), then release(field) says the caller may refill it. Zero-copy
        (share_inputs=True) is not used: AsyncInferQueue keeps no reference to a shared numpy
        buffer (a use-after-free, openvino PR #36554) and it crashed here under reader threads.
        Results come in completion order, not submission order.
        """
        jobs = ov.AsyncInferQueue(self._compiled, self.requests_in_flight)
        finished: queue.SimpleQueue = queue.SimpleQueue()
        outputs = [self._compiled.output(PROBABILITIES), self._compiled.output(EMBEDDING)]

        def on_done(request, key):
            finished.put((key, *(request.get_tensor(output).data[0].copy() for output in outputs)))

        jobs.set_callback(on_done)
        for key, field in items:
            # An IR without the uint16 preprocessing takes normalised float32.
            jobs.start_async({0: field if self._takes_raw else self.card.normalization.apply(field)}, key)
            if release:
                release(field)
            while not finished.empty():
                yield finished.get()
        jobs.wait_all()
        while not finished.empty():
            yield finished.get()

"""Model registry: cards are read at start, each model is loaded once per process, the first time it is used.

Every model, deep or classical, is a ``Processor``: RGB in, label map out. The batch code never knows which
kind it is talking to, and nothing here branches on a model's name (docs/architecture.md D5).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from runtime.common.cards import CardError, ModelCard, load_card, mask_problem
from runtime.worker import classical
from runtime.worker.tensors import labels_from_output, prepare

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """A model cannot be used (unknown, bad card, missing or corrupt file); ``kind`` is the failure class."""

    kind = "model_error"


class UnknownModel(ModelError):
    kind = "unknown_model"


class ModelSourceUnavailable(ConnectionError):
    """The models S3 prefix (or one model in it) could not be read at start: a property of the moment, so a job
    for a model the registry does not know is handed back (transient), not failed as unknown."""


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # uint8 HxW, value = class id, 0 = no class
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


class Processor(Protocol):
    card: ModelCard

    def segment(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> Segmentation:
        """Labels at ``size`` (the full image's (h, w); default: ``rgb``'s own), from ``rgb``, which may be a
        smaller copy of the image unless the card asks for ``full_resolution``."""
        ...


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def cpu_count() -> int:
    """Cores this process may use (the Fargate task's vCPUs, or a taskset), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxProcessor:
    """One onnxruntime session, used from one inference thread at a time."""

    def __init__(self, card: ModelCard, model_path: Path, *, threads: int | None = None, exact: bool = False) -> None:
        import onnxruntime as ort

        ort.disable_telemetry_events()  # no usage events from our tasks (the image keeps its store unwritable too)
        if card.input is None or card.output is None:  # guaranteed by the card validator
            raise ModelError(f"model {card.name!r}: card has no input/output section")
        self.card = card
        self.input_spec = card.input
        self.output_spec = card.output
        self.exact = exact  # float upsampling of the probabilities (tensors.labels_from_output)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or cpu_count()
        options.inter_op_num_threads = 1
        # No busy-waiting between ops: the I/O threads (decode, PNG encode) share these cores, and spinning
        # workers took their CPU (the bare loop ran 2-3x faster without spinning on a loaded 2-core machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: onnxruntime warnings go to stderr, not to the EMF stream
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            # onnxruntime's text names local paths and internals: the log gets it, the job record a stable reason
            log.error("model %r: %s cannot be loaded: %s", card.name, model_path, exc)
            raise ModelError(
                f"model {card.name!r}: {model_path.name} cannot be loaded by onnxruntime ({type(exc).__name__});"
                " the worker's log has details"
            ) from exc
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        self.input_name = card.input.name or self.session.get_inputs()[0].name
        self.output_name = card.output.name or self.session.get_outputs()[0].name
        if self.input_name not in inputs or self.output_name not in outputs:
            raise ModelError(
                f"model {card.name!r}: card names input {self.input_name!r} / output {self.output_name!r}, "
                f"the file has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )

    def segment(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> Segmentation:
        t0 = time.perf_counter()
        prepared = prepare(rgb, self.input_spec, size)
        t1 = time.perf_counter()
        (output,) = self.session.run([self.output_name], {self.input_name: prepared.tensor})
        t2 = time.perf_counter()
        labels = labels_from_output(
            output, prepared, self.input_spec, self.output_spec, self.card.classes, exact=self.exact
        )
        return Segmentation(labels, (t1 - t0) * 1000.0, (t2 - t1) * 1000.0, _ms(t2))


class ClassicalProcessor:
    """An OpenCV processor (no deep learning) behind the same interface."""

    def __init__(self, card: ModelCard, fn: Callable[[np.ndarray, ModelCard], np.ndarray]) -> None:
        self.card = card
        self.fn = fn

    def segment(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> Segmentation:
        t0 = time.perf_counter()
        labels = self.fn(rgb, self.card)
        t1 = time.perf_counter()
        if size is not None and labels.shape != size:  # a reduced image (the card allows it): label the full size
            labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        return Segmentation(labels, 0.0, (t1 - t0) * 1000.0, _ms(t1))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    """Cards by name, processors built lazily and kept for the life of the process."""

    def __init__(self, models_dir: Path, *, threads: int | None = None, exact: bool = False) -> None:
        self.models_dir = Path(models_dir)
        self.threads = threads
        self.exact = exact  # processors keep the float postprocessing (the accuracy tests' reference)
        self.cards: dict[str, ModelCard] = {}
        self.broken: dict[str, str] = {}  # model name -> why its card cannot be used
        self.files: dict[str, Path] = {}  # model name -> its file, for models from outside ``models_dir``
        self.unavailable: dict[str, str] = {}  # model name -> why it could not be fetched (transient)
        self.source_error: str | None = None  # set when a whole extra source (an S3 prefix) could not be read
        self.temp_dirs: list[Path] = []  # removed by close()
        self._processors: dict[str, Processor] = {}
        self._lock = threading.Lock()
        if not self.models_dir.is_dir():
            log.error("models folder %s does not exist", self.models_dir)
            return
        for card_path in sorted(self.models_dir.glob("*/card.json")):
            try:
                card = load_card(card_path)
            except CardError as exc:  # one bad card must not stop the other models from working
                self.broken[card_path.parent.name] = str(exc)
                log.error("ignoring model: %s", exc)
                continue
            problem = mask_problem(card, str(card_path))
            if problem:
                self.broken[card.name] = problem
                continue
            self.cards[card.name] = card

    def knows(self, name: str) -> bool:
        """Whether ``name`` is taken (usable or broken), so an extra source cannot replace it."""
        return name in self.cards or name in self.broken

    def add(self, card: ModelCard, file: Path | None) -> None:
        """Register a model whose file lives outside ``models_dir`` (``file`` None for a classical model)."""
        self.cards[card.name] = card
        if file is not None:
            self.files[card.name] = file

    def card(self, name: str) -> ModelCard:
        if name in self.broken:
            raise ModelError(f"model {name!r} is misconfigured: {self.broken[name]}")
        if name in self.unavailable:
            raise ModelSourceUnavailable(f"model {name!r} could not be fetched: {self.unavailable[name]}")
        if name not in self.cards:
            if self.source_error:
                raise ModelSourceUnavailable(f"model {name!r} is not known yet: {self.source_error}")
            known = ", ".join(sorted(self.cards)) or "none"
            raise UnknownModel(f"unknown model {name!r}; available: {known}")
        return self.cards[name]

    def close(self) -> None:
        """Remove downloaded model files: a local worker runs once per batch and must not fill /tmp."""
        for folder in self.temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self.temp_dirs.clear()

    def get(self, name: str) -> Processor:
        """The processor for ``name``, loading it on first use (thread-safe, once per process)."""
        processor = self._processors.get(name)
        if processor is not None:
            return processor
        with self._lock:
            processor = self._processors.get(name)
            if processor is None:
                processor = self._build(self.card(name))
                self._processors[name] = processor
            return processor

    def _build(self, card: ModelCard) -> Processor:
        if card.runtime == "opencv":
            fn = classical.PROCESSORS.get(card.processor or "")
            if fn is None:
                raise ModelError(
                    f"model {card.name!r}: unknown classical processor {card.processor!r}; "
                    f"available: {', '.join(sorted(classical.PROCESSORS))}"
                )
            return ClassicalProcessor(card, fn)
        path = self.files.get(card.name) or self.models_dir / card.name / (card.file or "model.onnx")
        if not path.is_file():
            raise ModelError(f"model {card.name!r}: file {path.name} is missing from {path.parent}")
        if card.sha256 and _sha256(path) != card.sha256.lower():
            raise ModelError(f"model {card.name!r}: {path.name} does not match the sha256 in its card")
        started = time.perf_counter()
        processor = OnnxProcessor(card, path, threads=self.threads, exact=self.exact)
        log.info("loaded model %s %s in %.0f ms", card.name, card.version, _ms(started))
        return processor

"""The threaded pipeline: source → preprocess → infer (batched) → decode + NMS → emit.

Each stage is a thread joined by small bounded queues, so stages overlap and the slowest one
sets the pace; every frame gets a timestamp at each stage boundary. An error in any stage stops
all of them and is re-raised by ``join``.
"""

import queue
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from .backends import Backend
from .decode import Detections, OutputLayout, decode
from .preprocess import letterbox
from .sources import Frame
from .stats import PipelineStats

_END = object()
PUT_POLL_S = 0.1


class PipelineConfig:
    """What the control API may change while running (thresholds, fps cap)."""

    FIELDS = ("conf_threshold", "iou_threshold", "max_detections", "fps_cap")

    def __init__(
        self,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
        fps_cap: float = 0.0,
    ) -> None:
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.fps_cap = fps_cap

    def as_dict(self) -> Dict[str, Any]:
        """The fields by name, in declaration order (what GET /config answers)."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return "PipelineConfig({})".format(", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()))

    def update(self, changes: dict) -> "PipelineConfig":
        """Validated partial update; raises ValueError naming the bad field."""
        fields = self.as_dict()
        for key, value in changes.items():
            if key not in fields:
                raise ValueError("unknown config field '{}': fields are {}".format(key, ", ".join(fields)))
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"config field '{key}' must be a number, got {value!r}")
            if key in ("conf_threshold", "iou_threshold") and not 0.0 <= value <= 1.0:
                raise ValueError(f"config field '{key}' must be within 0..1, got {value}")
            if value < 0:
                raise ValueError(f"config field '{key}' must be >= 0, got {value}")
        for key, value in changes.items():
            setattr(self, key, int(value) if key == "max_detections" else float(value))
        return self


Emit = Callable[[Frame, Detections], None]


class Pipeline:
    """Runs ``frames`` through ``backend``; ``emit`` gets each frame with detections in image pixels."""

    def __init__(
        self,
        backend: Backend,
        layout: OutputLayout,
        frames: Iterator[Frame],
        emit: Emit,
        config: Optional[PipelineConfig] = None,
        batch: int = 1,
        queue_size: int = 4,
        batch_wait_s: float = 0.005,
    ):
        self.backend, self.layout, self.emit = backend, layout, emit
        self.config = config or PipelineConfig()
        self.batch = batch
        self.batch_wait_s = batch_wait_s
        self.stats = PipelineStats()
        self._frames = frames
        self._stop = threading.Event()
        self._errors: List[BaseException] = []
        self._q_pre: queue.Queue = queue.Queue(queue_size)
        self._q_infer: queue.Queue = queue.Queue(queue_size * batch)
        self._q_post: queue.Queue = queue.Queue(queue_size)
        stages = (self._source, self._preprocess, self._infer, self._post)
        self._threads = [
            threading.Thread(target=self._guard, args=(s,), name="pipeline" + s.__name__, daemon=True) for s in stages
        ]

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the end of the stream (or a stop); True when finished. Re-raises a stage's error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self._errors:
            raise self._errors[0]
        return not self.running

    # plumbing --------------------------------------------------------------------------------------
    def _guard(self, stage: Callable[[], None]) -> None:
        try:
            stage()
        except BaseException as exc:
            self._errors.append(exc)
            self._stop.set()

    def _put(self, q: queue.Queue, item: object) -> bool:
        """Bounded put that gives up when the pipeline is stopping (so no thread blocks forever)."""
        while True:
            try:
                q.put(item, timeout=PUT_POLL_S)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _get(self, q: queue.Queue, timeout: float = PUT_POLL_S) -> object:
        while True:
            try:
                return q.get(timeout=timeout)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    # stages ----------------------------------------------------------------------------------------
    def _source(self) -> None:
        next_at = time.monotonic()
        try:
            for frame in self._frames:
                if self._stop.is_set():
                    break
                cap = self.config.fps_cap
                if cap:
                    delay = next_at - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_at = max(next_at, time.monotonic() - 1.0 / cap) + 1.0 / cap
                frame.ts["capture"] = time.time()
                if not self._put(self._q_pre, frame):
                    break
        finally:
            self._put(self._q_pre, _END)

    def _preprocess(self) -> None:
        try:
            while True:
                frame = self._get(self._q_pre)
                if frame is _END:
                    return
                tensor, box = letterbox(frame.image, self.backend.input_hw)
                frame.ts["pre"] = time.time()
                if not self._put(self._q_infer, (frame, tensor, box)):
                    return
        finally:
            self._put(self._q_infer, _END)

    def _infer(self) -> None:
        h, w = self.backend.input_hw
        staging = np.empty((self.batch, 3, h, w), dtype=np.float32)
        try:
            ended = False
            while not ended:
                item = self._get(self._q_infer)
                if item is _END:
                    return
                items = [item]
                deadline = time.monotonic() + self.batch_wait_s
                while len(items) < self.batch:
                    try:
                        nxt = self._q_infer.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if nxt is _END:
                        ended = True
                        break
                    items.append(nxt)
                if len(items) == 1:  # no copy on the hot path at batch 1
                    data = items[0][1][None]
                else:
                    for i, (_, tensor, _) in enumerate(items):
                        staging[i] = tensor
                    data = staging[: len(items)]
                started = time.time()
                output = self.backend.infer(data)
                finished = time.time()
                for frame, _, _ in items:
                    frame.ts["infer_start"], frame.ts["infer_end"] = started, finished
                if not self._put(self._q_post, (items, output)):
                    return
        finally:
            self._put(self._q_post, _END)

    def _post(self) -> None:
        while True:
            item = self._get(self._q_post)
            if item is _END:
                return
            items, output = item
            cfg = self.config
            results = decode(output, self.layout, cfg.conf_threshold, cfg.iou_threshold, cfg.max_detections)
            for (frame, _, box), det in zip(items, results):
                image_dets = Detections(box.to_image(det.boxes), det.scores, det.classes)
                frame.ts["post"] = time.time()
                self.emit(frame, image_dets)
                frame.ts.setdefault("emit", time.time())
                self.stats.record(frame.ts, len(image_dets))

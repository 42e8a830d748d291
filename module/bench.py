"""``python -m module bench``: raw engine throughput and end-to-end pipeline throughput in one run.

Raw is the engine alone on a prepared batch (like trtexec). Pipeline is the full threaded
pipeline (letterbox, batching, decode, NMS) on frames held in memory, so that disk or camera
I/O does not hide the pipeline's own overhead (MLPerf loads samples before timing too).

Every measured phase is reported with its start and end on the board's own clock (``time.time()``)
and the frames it covered, so that telemetry sampled on the board during the run can be cut to
exactly that phase: engine build, calibration and warm-up fall outside every phase.
"""

import math
import os
import platform
import socket
import statistics
import sys
import time
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from . import __version__
from .backends import Backend, create_backend
from .decode import OutputLayout, layout_for
from .model import load_model
from .pipeline import Pipeline
from .preprocess import letterbox
from .sources import cycle
from .stats import STAGES, percentiles_ms

SCHEMA = "jetson-hil.bench/1"
DISTINCT_FRAMES = 16


def sample_images(count: int = DISTINCT_FRAMES, width: int = 640, height: int = 480) -> List[np.ndarray]:
    """Camera-sized frames with objects in them (content matters little for throughput)."""
    from .synthetic import MovingScene

    scene = MovingScene(seed=11, width=width, height=height)
    return [scene.frame(i * 7).image for i in range(count)]


#: seconds to add to time.perf_counter() to get the board's time.time(), read once so phases share one mapping
_EPOCH_OFFSET = time.time() - time.perf_counter()


class Phase(NamedTuple):
    """A measured span on the board's clock (seconds since the epoch), the frames it covered, and how steadily
    they came: the longest and the 90th-percentile wait between frames, so that a stall shows."""

    phase: str
    round: int
    start: float
    end: float
    frames: int
    longest_gap_s: float
    typical_gap_s: float

    @classmethod
    def between(cls, phase: str, index: int, marks: List[float], frames: int) -> "Phase":
        """From perf_counter marks: the phase's start, then the time each frame (or batch) was done."""
        gaps = np.diff(marks) if len(marks) > 1 else np.zeros(1)
        return cls(phase, index, marks[0] + _EPOCH_OFFSET, marks[-1] + _EPOCH_OFFSET, frames,
                   round(float(gaps.max()), 6), round(float(np.percentile(gaps, 90)), 6))


class Round:
    """One raw measurement followed by one pipeline measurement on the same backend."""

    def __init__(
        self,
        raw_fps: float,
        pipeline_fps: float,
        raw_latencies: List[float],
        pipeline: Pipeline,
        frames: int,
        phases: Tuple[Phase, Phase],
        engine_busy: float,
    ) -> None:
        self.raw_fps = raw_fps
        self.pipeline_fps = pipeline_fps
        self.raw_latencies = raw_latencies
        self.pipeline = pipeline
        self.frames = frames
        self.phases = phases
        #: time inside engine calls over the span from the first measured call's start to the last one's end:
        #: well below 1 means the engine sat waiting for its next batch; near 1 with a ratio below 1 means each
        #: call took longer beside the other stages (cores, memory bandwidth, or the GIL retaken after a release)
        self.engine_busy = engine_busy

    @property
    def ratio(self) -> float:
        return self.pipeline_fps / self.raw_fps if self.raw_fps else 0.0


def _raw(
    backend: Backend, images: List[np.ndarray], batch: int, frames: int, warmup: int, duration_s: Optional[float]
) -> Tuple[float, List[float], List[float]]:
    """(FPS, per-call latencies, perf_counter at the first timed call and after each)."""
    tensors = [letterbox(img, backend.input_hw)[0] for img in images[:batch]]
    while len(tensors) < batch:
        tensors.append(tensors[len(tensors) % len(images)])
    data = np.ascontiguousarray(np.stack(tensors))
    for _ in range(warmup):
        backend.infer(data)
    iterations = max(1, math.ceil(frames / batch))
    latencies = []
    marks = [time.perf_counter()]
    while (len(latencies) < iterations) if duration_s is None else (marks[-1] - marks[0] < duration_s):
        t0 = time.perf_counter()
        backend.infer(data)
        marks.append(time.perf_counter())
        latencies.append(marks[-1] - t0)
    return len(latencies) * batch / (marks[-1] - marks[0]), latencies, marks


def _pipeline(
    backend: Backend, layout: OutputLayout, images: List[np.ndarray], batch: int, frames: int, warmup: int
) -> Tuple[float, float, Pipeline, List[float]]:
    """Frames per second between the first and last measured emit, the engine's busy share, the pipeline, and
    the measured emits' perf_counter times."""
    skip = warmup * batch
    emitted: List[float] = []
    engine: List[Tuple[float, float]] = []

    def emit(frame, detections) -> None:
        emitted.append(time.perf_counter())
        engine.append((frame.ts["infer_start"], frame.ts["infer_end"]))

    pipeline = Pipeline(backend, layout, cycle(images, skip + frames), emit, batch=batch).start()
    pipeline.join()
    first = skip if len(emitted) > skip + 1 else 0
    span = emitted[-1] - emitted[first]
    calls = sorted(set(engine[first:]))  # frames of one batch share one engine call
    wall = calls[-1][1] - calls[0][0] if calls else 0.0
    busy = sum(end - start for start, end in calls) / wall if wall > 0 else 0.0
    return ((len(emitted) - first - 1) / span if span > 0 else 0.0), busy, pipeline, emitted[first:]


def measure(
    backend: Backend,
    layout: OutputLayout,
    images: List[np.ndarray],
    *,
    batch: int = 1,
    frames: int = 300,
    warmup: int = 20,
    duration_s: Optional[float] = None,
    rounds: int = 1,
) -> List[Round]:
    """Raw then pipeline, ``rounds`` times in turn, so that drift of a shared or throttling machine hits both alike.

    With ``duration_s`` each raw part runs for about that long and the pipeline that round gets as many
    frames as raw managed; otherwise each part runs ``frames`` frames.
    """
    out = []
    for index in range(max(1, rounds)):
        raw_fps, raw_latencies, raw_marks = _raw(backend, images, batch, frames, warmup, duration_s)
        pipeline_frames = frames if duration_s is None else max(2, round(raw_fps * duration_s))
        pipeline_fps, busy, pipeline, emits = _pipeline(backend, layout, images, batch, pipeline_frames, warmup)
        phases = (
            Phase.between("raw", index, raw_marks, len(raw_latencies) * batch),
            Phase.between("pipeline", index, emits, len(emits) - 1),
        )
        out.append(Round(raw_fps, pipeline_fps, raw_latencies, pipeline, pipeline_frames, phases, busy))
    return out


def run_bench(
    model_path: Optional[str],
    *,
    labels: Optional[str] = None,
    frames: int = 300,
    duration_s: Optional[float] = None,
    rounds: int = 1,
    batch: int = 1,
    warmup: int = 20,
    precision: str = "fp32",
    backend_name: str = "auto",
    device: str = "auto",
    calib_images: Optional[str] = None,
    threads: Optional[int] = None,
) -> dict:
    """Run both measurements and return the result document (see SCHEMA).

    With several rounds the FPS figures are medians over the rounds and ``pipeline_vs_raw`` is the
    median of each round's own ratio; latency percentiles pool all rounds, and each round also
    reports its own (so that a reader can tell the run's spread). ``phases`` gives every measured
    span on the board's clock; ``wall_s`` is the whole command, engine build and warm-up included.
    """
    model = load_model(model_path, labels)
    options = {"threads": threads} if threads else {}
    started = time.time()
    with create_backend(
        backend_name, model, precision=precision, batch=batch, device=device, calib_images=calib_images, **options
    ) as backend:
        model, layout = layout_for(model, backend)
        runs = measure(
            backend,
            layout,
            sample_images(),
            batch=batch,
            frames=frames,
            warmup=warmup,
            duration_s=duration_s,
            rounds=rounds,
        )
        raw_latencies = [v for r in runs for v in r.raw_latencies]
        stages = {
            name: percentiles_ms([v for r in runs for v in r.pipeline.stats.stage_samples(name)]) for name in STAGES
        }
        return {
            "schema": SCHEMA,
            "backend": backend.name,
            "device": backend.device,
            "precision": precision,
            "quantizer": backend.quantizer,
            "batch": batch,
            "frames": sum(r.frames for r in runs),
            "raw_iterations": len(raw_latencies),
            "duration_s_requested": duration_s,
            "warmup": warmup,
            "model": str(model.path),
            "model_sha256": model.sha256,
            "input_hw": list(backend.input_hw),
            "input_name": backend.input_name,
            "engine": backend.engine_path,
            "layout": layout.family,
            "classes": layout.num_classes,
            "raw_fps": round(statistics.median(r.raw_fps for r in runs), 2),
            "pipeline_fps": round(statistics.median(r.pipeline_fps for r in runs), 2),
            "pipeline_vs_raw": round(statistics.median(r.ratio for r in runs), 4),
            "pipeline_engine_busy": round(statistics.median(r.engine_busy for r in runs), 4),
            "rounds": [
                {
                    "raw_fps": round(r.raw_fps, 2),
                    "pipeline_fps": round(r.pipeline_fps, 2),
                    "ratio": round(r.ratio, 4),
                    "engine_busy": round(r.engine_busy, 4),
                    "latency_ms": percentiles_ms(r.raw_latencies),
                    "e2e_latency_ms": percentiles_ms(r.pipeline.stats.stage_samples("end_to_end")),
                }
                for r in runs
            ],
            "clock": "board time.time(), seconds since the epoch",
            "phases": [dict(phase._asdict()) for r in runs for phase in r.phases],
            "latency_ms": percentiles_ms(raw_latencies),
            "raw_latencies_ms": [round(v * 1000.0, 4) for v in raw_latencies],
            "pipeline_latency_ms": stages,
            "versions": dict(
                backend.versions(), module=__version__, numpy=np.__version__, python=platform.python_version()
            ),
            "host": {"hostname": socket.gethostname(), "machine": platform.machine(), "cpus": os.cpu_count()},
            "started": started,
            "wall_s": round(time.time() - started, 2),
            "argv": sys.argv[1:],
        }

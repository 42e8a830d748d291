"""Running statistics of a pipeline: frame counts, FPS and latency percentiles per stage."""

import threading
import time
from collections import deque
from typing import Dict, List, Union

import numpy as np

PERCENTILES = (50, 90, 95, 99)
#: stage name -> (start timestamp key, end timestamp key) in Frame.ts
STAGES = {
    "preprocess": ("capture", "pre"),
    "queue": ("pre", "infer_start"),
    "infer": ("infer_start", "infer_end"),
    "postprocess": ("infer_end", "post"),
    "end_to_end": ("capture", "emit"),
}


def percentiles_ms(values_s: Union[List[float], np.ndarray]) -> Dict[str, float]:
    """p50/p90/p95/p99 in milliseconds, plus mean; empty input gives an empty dict."""
    data = np.asarray(values_s, dtype=np.float64) * 1000.0
    if data.size == 0:
        return {}
    out = {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, np.percentile(data, PERCENTILES))}
    out["mean"] = round(float(data.mean()), 3)
    return out


class PipelineStats:
    """Thread-safe: the post stage records, the control API reads."""

    def __init__(self, window: int = 10_000):
        self._lock = threading.Lock()
        self._stage = {name: deque(maxlen=window) for name in STAGES}
        self._emitted = deque(maxlen=window)
        self.frames = 0
        self.detections = 0
        self.started = time.time()

    def record(self, ts: Dict[str, float], detections: int) -> None:
        with self._lock:
            for name, (start, end) in STAGES.items():
                if start in ts and end in ts:
                    self._stage[name].append(ts[end] - ts[start])
            self._emitted.append(ts.get("emit", time.time()))
            self.frames += 1
            self.detections += detections

    def fps(self, over_s: float = 5.0) -> float:
        """Frames per second over the last ``over_s`` seconds of emitted frames."""
        with self._lock:
            times = list(self._emitted)
        if len(times) < 2:
            return 0.0
        recent = [t for t in times if t >= times[-1] - over_s]
        span = recent[-1] - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def stage_samples(self, name: str) -> List[float]:
        with self._lock:
            return list(self._stage[name])

    def snapshot(self) -> dict:
        with self._lock:
            stages = {name: percentiles_ms(list(values)) for name, values in self._stage.items()}
            frames, detections = self.frames, self.detections
        return {
            "frames": frames,
            "detections": detections,
            "fps": round(self.fps(), 2),
            "uptime_s": round(time.time() - self.started, 1),
            "latency_ms": stages,
        }

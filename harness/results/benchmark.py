"""Latencies as pytest-benchmark JSON, so `pytest-benchmark compare` and its tooling read board runs.

The statistics follow pytest-benchmark's own `Stats` (sample stdev, its quartile methods, Tukey
fences, `outliers` as "stddev;iqr"), so a file written here compares like one it wrote itself.
pytest-benchmark itself is not needed at run time.
"""

from __future__ import annotations

import json
import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.errors import HarnessError
from harness.results.files import replace_atomically

FORMAT_VERSION = "5.3.1"  # the pytest-benchmark release whose JSON layout this follows


def _quartiles(data: Sequence[float]) -> tuple[float, float]:
    """Q1 and Q3 of sorted data by pytest-benchmark's choice: Wikipedia method 3 (odd n), method 2 (even n)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:
        return statistics.median(data[: n // 2]), statistics.median(data[n // 2:])
    k, r = divmod(n, 4)
    if r == 1:
        return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
    return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]


def latency_stats(latencies_s: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` object for one value per round (seconds)."""
    if not latencies_s:
        raise ValueError("latency statistics need at least one latency")
    data = sorted(latencies_s)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    stddev_outliers = sum(1 for v in data if abs(v - mean) > stddev)
    iqr_outliers = sum(1 for v in data if v < low or v > high)
    total = sum(data)
    return {
        "min": data[0], "max": data[-1], "mean": mean, "stddev": stddev, "rounds": len(data),
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": data[bisect_left(data, low)], "hd15iqr": data[bisect_right(data, high) - 1],
        "ops": len(data) / total if total else 0, "total": total,
        "data": list(latencies_s), "iterations": 1,
    }


def benchmark_entry(name: str, latencies_s: Sequence[float], *, group: str | None = None,
                    fullname: str | None = None, params: dict[str, Any] | None = None,
                    extra_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """One `benchmarks[]` item; `extra_info` carries what pytest-benchmark has no field for (fps, power)."""
    return {
        "group": group,
        "name": name,
        "fullname": fullname or name,
        "params": params,
        "param": None if params is None else "-".join(str(v) for v in params.values()),
        "extra_info": dict(extra_info or {}),
        "options": {"disable_gc": False, "timer": "board", "min_rounds": len(latencies_s), "max_time": 0,
                    "min_time": 0, "precision": None, "confidence": None, "warmup": False},
        "stats": latency_stats(latencies_s),
    }


def _machine_info() -> dict[str, Any]:
    """The harness host, in pytest-benchmark's keys; callers add the board under `board`."""
    return {
        "node": platform.node(), "processor": platform.processor(), "machine": platform.machine(),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": platform.python_version(), "python_version": platform.python_version(),
        "python_build": list(platform.python_build()), "release": platform.release(), "system": platform.system(),
        "cpu": {},
    }


def write_benchmark_json(path: str | Path, benchmarks: Sequence[dict[str, Any]], *,
                         machine_info: dict[str, Any] | None = None,
                         commit_info: dict[str, Any] | None = None) -> Path:
    """Write a pytest-benchmark results file (all or nothing); `machine_info` entries are merged over the host's."""
    document = {
        "machine_info": {**_machine_info(), **(machine_info or {})},
        "commit_info": commit_info or {"id": "unversioned", "time": None, "author_time": None, "dirty": False,
                                       "project": "jetson-hil", "branch": "(unknown)"},
        "benchmarks": list(benchmarks),
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": FORMAT_VERSION,
    }
    return replace_atomically(path, json.dumps(document, indent=4) + "\n")


class BenchmarkFile:
    """A pytest-benchmark file kept current: rewritten whole at every entry, so a killed run leaves it complete.
    The boards of a farm run share one file: each entry is added to what the file holds, under a lock, and
    `machine_info["boards"]` names every board in it (each entry's `extra_info["board"]` says whose it is)."""

    def __init__(self, path: str | Path, board: str, profile: str) -> None:
        self.path = Path(path)
        self.board = board
        self.profile = profile
        self._lock = FileLock(f"{self.path}.lock")

    def add(self, entry: dict[str, Any]) -> None:
        entry = {**entry, "extra_info": {**entry.get("extra_info", {}), "board": self.board}}
        with self._lock:
            before = self._read()
            boards = {**before.get("machine_info", {}).get("boards", {}), self.board: self.profile}
            write_benchmark_json(self.path, [*before.get("benchmarks", []), entry],
                                 machine_info={"boards": dict(sorted(boards.items()))})

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{self.path}: not a benchmark file this run can add to ({exc}); move it away") from None
        return document if isinstance(document, dict) else {}

"""Throughput per power mode and batch size, with clocks locked, joined with board telemetry.

For each selected power mode (``--power-mode``; default: the profile's default and max modes) the
board is switched, clocks are locked with jetson_clocks, and the module's bench runs for a fixed
duration after warm-up: raw engine FPS and latency percentiles (MLPerf SingleStream-style at
batch 1, Offline-style throughput at larger batches) and end-to-end pipeline FPS, while tegrastats
samples power, clocks and temperatures. Power mode and clocks are restored at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from harness.board import Board
from harness.board.guard import PowerGuard
from harness.deploy import ModuleHandle
from harness.profiles import PowerMode
from harness.results import ResultsWriter, RowContext, benchmark_entry, observations
from harness.telemetry.window import TelemetryWindow

WARMUP_ITERATIONS = 10
PERCENTILES = ("p50", "p90", "p95", "p99")


@pytest.fixture(scope="module")
def quiet_module(deployed: ModuleHandle) -> Iterator[ModuleHandle]:
    """The service's own pipeline paused so that the bench has the board to itself; resumed after."""
    deployed.api("/stop", "POST")
    try:
        yield deployed
    finally:
        deployed.api("/start", "POST")


@pytest.fixture
def mode_applied(power_guard: PowerGuard, power_mode: PowerMode) -> PowerMode:
    """Switch to the test's power mode (the board skips it when already there) and lock clocks at its maximum."""
    power_guard.set_mode(power_mode.id)
    power_guard.lock_clocks()
    return power_mode


def test_throughput(request: pytest.FixtureRequest, quiet_module: ModuleHandle, module_info: dict, board: Board,
                    mode_applied: PowerMode, batch: int, results: ResultsWriter, row_context: RowContext,
                    modeled: frozenset[str], benchmarks: list) -> None:
    precision = [p for p in board.profile.precisions if p in module_info["precisions"]][-1]
    duration = request.config.getoption("--duration")
    args = ["bench", "--duration", str(duration), "--batch", str(batch), "--warmup", str(WARMUP_ITERATIONS),
            "--precision", precision, "--backend", module_info["backend"]]
    window = TelemetryWindow(board, interval_ms=request.config.getoption("--telemetry-interval"))
    with window:
        run = quiet_module.run_module(args, timeout=120 + 6 * duration)
    if not run.ok:
        pytest.fail(f"bench on {board.name} failed (exit {run.exit_status}): {run.stderr.strip()[-800:]}",
                    pytrace=False)
    bench = json.loads(run.stdout)
    summary = window.summary(mode=mode_applied, frames=bench["frames_processed"], duration_s=bench["duration_s"])

    context = replace(row_context, power_mode=mode_applied.name, precision=precision, batch=batch)
    metrics = [("raw_fps", bench["raw_fps"], "fps"), ("pipeline_fps", bench["pipeline_fps"], "fps"),
               ("pipeline_vs_raw", bench["pipeline_vs_raw"], "ratio"),
               ("pipeline_engine_busy", bench["pipeline_engine_busy"], "ratio")]
    metrics += [(f"latency_{p}", bench["latency_ms"][p], "ms") for p in PERCENTILES]
    metrics += [(f"e2e_latency_{p}", bench["pipeline_latency_ms"]["end_to_end"][p], "ms") for p in PERCENTILES]
    metrics += list(summary.to_rows())
    results.write_all(observations(context, metrics, modeled))
    benchmarks.append(benchmark_entry(
        f"throughput[{mode_applied.name}-b{batch}-{precision}]",
        [ms / 1000.0 for ms in bench["raw_latencies_ms"]],
        group=f"{board.profile.name} {bench['backend']} ({bench['device']})",
        params={"power_mode": mode_applied.name, "batch": batch, "precision": precision},
        extra_info={"raw_fps": bench["raw_fps"], "pipeline_fps": bench["pipeline_fps"],
                    "power_mean_w": summary.mean_power_w, "fps_per_w": summary.fps_per_w,
                    "energy_j": summary.energy_j, "throttled": summary.throttled,
                    "power_source": "modeled" if "power" in modeled else "measured"},
    ))

    assert bench["raw_fps"] > 0 and bench["pipeline_fps"] > 0
    assert summary.samples >= 2, f"tegrastats gave {summary.samples} samples during the measurement"
    for metric in ("raw_fps", "pipeline_fps"):
        floor = board.profile.floor(mode_applied, precision, batch, metric)
        if floor is not None:
            assert bench[metric] >= floor, f"{metric} {bench[metric]} below the lab's floor {floor}"

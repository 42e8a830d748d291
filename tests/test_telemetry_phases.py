"""Energy per phase: telemetry cut to the bench's phases on the board's clock, each phase with its own frames.

The live test runs a tegrastats stand-in (a real Orin Nano line whose VDD_IN follows a schedule of power
steps at known board times) through the real window and its board-side stamper on the local transport,
and checks that each phase gets the energy of its own step and only its own frames.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from harness.board.board import Board
from harness.profiles import get_profile
from harness.telemetry.phases import bench_figures, reduce_rounds, stalls
from harness.telemetry.tegrastats import TegrastatsSample, parse_file, parse_line
from harness.telemetry.window import TelemetryWindow, TimedSample, summarize
from harness.transport.local import LocalTransport
from tests.sshd import wait_until

DATA = Path(__file__).parent / "data" / "jetson" / "tegrastats"
ORIN_NANO = get_profile("orin-nano")
(IDLE_LINE,) = parse_file(DATA / "orin-nano-super-jp6.2-user.txt")  # VDD_IN 4556 mW


def sample_at(watts: float) -> TegrastatsSample:
    """The real Orin Nano line with its input rail set to `watts`."""
    mw = round(watts * 1000)
    return parse_line(IDLE_LINE.raw.replace("VDD_IN 4556mW/4556mW", f"VDD_IN {mw}mW/{mw}mW"))


def stepped(points: list[tuple[float, float]]) -> list[TimedSample]:
    return [TimedSample(sample_at(w), t, "board") for t, w in points]


def test_a_span_gets_the_energy_inside_it_interpolated_at_its_edges() -> None:
    # 2 W until t=10, 8 W from t=10 to t=12, 2 W after; samples every 0.5 s
    points = [(9.0 + 0.5 * i, 8.0 if 10.0 <= 9.0 + 0.5 * i <= 12.0 else 2.0) for i in range(9)]
    s = summarize(stepped(points), span=(10.0, 12.0), frames=100, profile=ORIN_NANO, mode=0)
    assert s.energy_j == pytest.approx(16.0)
    assert s.mean_power_w == pytest.approx(8.0)
    assert s.energy_per_frame_j == pytest.approx(0.16)
    assert s.fps_per_w == pytest.approx(50 / 8.0)
    assert s.samples == 5 and s.energy_note is None
    # a span between samples: power interpolated linearly from the samples around its edges
    mid = summarize(stepped([(0.0, 2.0), (1.0, 4.0), (2.0, 4.0)]), span=(0.5, 2.0), frames=10, profile=ORIN_NANO,
                    mode=0)
    assert mid.energy_j == pytest.approx(0.5 * (3.0 + 4.0) / 2 + 1.0 * 4.0)


def test_a_span_without_samples_has_no_energy_and_says_why() -> None:
    s = summarize(stepped([(0.0, 2.0), (5.0, 2.0)]), span=(1.0, 2.0), frames=10, profile=ORIN_NANO, mode=0)
    assert s.energy_j is None and s.energy_per_frame_j is None
    assert s.energy_note == "0 power sample(s) inside the span; energy needs at least 2"
    partial = summarize(stepped([(0.0, 2.0), (1.0, 2.0), (1.5, 2.0)]), span=(1.0, 3.0), frames=10,
                        profile=ORIN_NANO, mode=0)
    assert partial.energy_note == "samples cover 0.50 s of the 2.00 s span"
    assert partial.energy_per_frame_j == pytest.approx(2.0 * 2.0 / 10)  # mean power over the whole phase


def test_rounds_reduce_to_the_median_and_its_spread() -> None:
    assert reduce_rounds("raw_fps", [100.0, 110.0, 90.0, 300.0, 100.0]) == (100.0, pytest.approx(0.1))
    assert reduce_rounds("raw_fps", [100.0]) == (100.0, None)
    assert reduce_rounds("power_max", [3.0, 9.0]) == (9.0, None)
    assert reduce_rounds("telemetry_samples", [10.0, 11.0]) == (21.0, None)


def bench_doc(phases: list[tuple[str, int, float, float, int]]) -> dict:
    one = {"raw_fps": 100.0, "pipeline_fps": 50.0, "ratio": 0.5, "engine_busy": 0.9,
           "latency_ms": {p: 10.0 for p in ("p50", "p90", "p95", "p99")},
           "e2e_latency_ms": {p: 20.0 for p in ("p50", "p90", "p95", "p99")}}
    return {"rounds": [one] * len({r for _, r, *_ in phases}),
            "phases": [{"phase": n, "round": r, "start": a, "end": b, "frames": f} for n, r, a, b, f in phases]}


def test_bench_figures_never_mix_phases() -> None:
    # idle 3 W, raw at 9 W for 1 s with 100 frames, idle, pipeline at 6 W for 1 s with 50 frames
    schedule = [(0.0, 3.0), (0.9, 3.0), (1.0, 9.0), (2.0, 9.0), (2.1, 3.0), (2.9, 3.0), (3.0, 6.0), (4.0, 6.0),
                (4.1, 3.0)]
    points = [(t / 10, max(p for p in schedule if p[0] <= t / 10)[1]) for t in range(42)]
    figures, notes = bench_figures(bench_doc([("raw", 0, 1.0, 2.0, 100), ("pipeline", 0, 3.0, 4.0, 50)]),
                                   stepped(points), ORIN_NANO, ORIN_NANO.default_mode)
    got = {(f.phase, f.metric): f.value for f in figures}
    assert notes == []
    assert got["raw", "power_mean"] == pytest.approx(9.0)
    assert got["raw", "energy_per_frame"] == pytest.approx(9.0 / 100)
    assert got["pipeline", "energy_per_frame"] == pytest.approx(6.0 / 50)
    assert got["pipeline", "fps_per_w"] == pytest.approx(50 / 6.0)
    assert got["raw", "raw_fps"] == 100.0 and got["pipeline", "pipeline_fps"] == 50.0
    assert got[None, "pipeline_vs_raw"] == 0.5


def test_samples_without_board_time_give_no_phase_power() -> None:
    host = [TimedSample(IDLE_LINE, t, "host") for t in (0.0, 1.0)]
    figures, notes = bench_figures(bench_doc([("raw", 0, 0.0, 1.0, 10)]), host, ORIN_NANO, ORIN_NANO.default_mode)
    assert notes == ["telemetry samples carry host time, not the board's: no per-phase power"]
    assert not [f for f in figures if f.metric == "energy"]


# A tegrastats stand-in: the real Orin Nano line, VDD_IN set by a schedule of (board time, mW) steps.
FAKE = """#!{python}
import json, sys, time
interval = int(sys.argv[sys.argv.index("--interval") + 1]) / 1000
schedule = json.load(open({schedule!r}))
template = open({capture!r}).readline().rstrip("\\n")
while True:
    now = time.time()
    mw = [w for t, w in schedule if t <= now][-1]
    print(template.replace("VDD_IN 4556mW/4556mW", "VDD_IN %dmW/%dmW" % (mw, mw)), flush=True)
    time.sleep(interval)
"""


def test_live_window_assigns_each_power_step_to_its_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = time.time() + 0.5
    steps = [(0.0, 3000), (start + 0.5, 9000), (start + 1.5, 3000), (start + 2.0, 6000), (start + 3.0, 3000)]
    (tmp_path / "schedule.json").write_text(json.dumps(steps))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tegrastats"
    fake.write_text(FAKE.format(python=sys.executable, schedule=str(tmp_path / "schedule.json"),
                                capture=str(DATA / "orin-nano-super-jp6.2-user.txt")))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    board = Board("local-orin-nano", ORIN_NANO, LocalTransport())
    board.sudo = ""  # the stand-in needs no root

    with TelemetryWindow(board, interval_ms=50) as window:
        wait_until(lambda: (s := window.samples()) and s[-1].t_s > start + 3.3, 20, "samples past the last step")
    phases = [("raw", 0, start + 0.5, start + 1.5, 200), ("pipeline", 0, start + 2.0, start + 3.0, 100)]
    figures, notes = bench_figures(bench_doc(phases), window.stop(), ORIN_NANO, ORIN_NANO.default_mode)
    got = {(f.phase, f.metric): f.value for f in figures}
    assert notes == []
    assert got["raw", "power_mean"] == pytest.approx(9.0, rel=0.05)
    assert got["raw", "energy_per_frame"] == pytest.approx(9.0 / 200, rel=0.05)
    assert got["pipeline", "power_mean"] == pytest.approx(6.0, rel=0.05)
    assert got["pipeline", "energy_per_frame"] == pytest.approx(6.0 / 100, rel=0.05)
    assert got["raw", "telemetry_samples"] >= 15 and got["pipeline", "telemetry_samples"] >= 15


def test_a_stalled_phase_or_quiet_telemetry_invalidates_the_measurement() -> None:
    def phase(name: str, start: float, end: float, longest: float, typical: float) -> dict:
        return {"phase": name, "round": 0, "start": start, "end": end, "frames": 100, "longest_gap_s": longest,
                "typical_gap_s": typical}

    steady = [TimedSample(IDLE_LINE, t / 10, "board") for t in range(0, 400)]
    # a board frozen for 30 s in the raw phase: one engine call took 30 s where they take 12 ms
    frozen = {"phases": [phase("raw", 1.0, 33.0, 30.0, 0.012)]}
    assert stalls(frozen, steady, 0.1) == ["raw round 1: no frame for 30.00 s of a 32.00 s phase (typically 0.012 s)"]
    # batch 8 at 30 fps: frames come 8 at a time, 0.27 s apart, which is how this phase always looks
    batched = {"phases": [phase("pipeline", 1.0, 2.0, 0.27, 0.27)]}
    assert stalls(batched, steady, 0.1) == []
    hiccup = {"phases": [phase("raw", 1.0, 2.0, 0.4, 0.004)]}  # 400 ms of a 1 s phase: a shared VM's scheduler
    assert stalls(hiccup, steady, 0.1) == []
    quiet = [s for s in steady if not 12.0 < s.t_s < 15.0]
    assert stalls({"phases": [phase("pipeline", 10.0, 20.0, 0.01, 0.01)]}, quiet, 0.1) == [
        "pipeline round 1: no telemetry sample for 3.00 s (sampling every 0.1 s)"]

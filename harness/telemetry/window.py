"""Telemetry windows: sample a board while a measurement runs, then reduce the samples to a summary.

`TelemetryWindow` streams a sampler (tegrastats by default; jtop, see telemetry.jtop) over the board's
transport. Each line is stamped on the board with the board's own clock as it leaves the sampler, so
samples share a clock with what a benchmark on the board reports (its phases' start and end) and a
window can be cut to one phase exactly, whatever the network did to the lines on their way.
`summarize` is pure so it can be tested on real captures: energy is the trapezoidal integral of total
power over the sample times, never jtop's running average, and throttling is judged against the power
mode's clock caps from the device profile.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import fmean
from typing import Literal, Protocol

import numpy as np

from harness.board.board import Board
from harness.errors import HarnessError
from harness.profiles import DeviceProfile, PowerMode
from harness.telemetry.tegrastats import TegrastatsSample, parse_line
from harness.transport.base import StreamingCommand

log = logging.getLogger(__name__)

#: board: the board's time.time() stamped on every line (seconds since the epoch); tegrastats: the tool's own
#: whole-second stamps; host: when the harness received the line. Only "board" can be cut to a phase.
Clock = Literal["board", "tegrastats", "host"]
#: JetPack 4 boards print a PMIC zone fixed at 100 C (in every capture under tests/data): not a measurement.
IGNORED_SENSORS = frozenset({"PMIC"})
_STOP_JOIN_S = 5.0
#: a span whose samples cover less than this share of it says so in its note
COVERAGE_WARN = 0.9
#: run on the board after tegrastats: prefixes every line with the board's time.time() as the line is read
STAMPER = ('import sys, time\n'
           'for line in iter(sys.stdin.readline, ""):\n'
           '    sys.stdout.write("%.6f %s" % (time.time(), line))\n'
           '    sys.stdout.flush()')


@dataclass(frozen=True)
class TimedSample:
    """One sample and the time energy is integrated over: seconds since the epoch on the board's clock,
    else seconds from the window's first sample."""

    sample: TegrastatsSample
    t_s: float
    clock: Clock


@dataclass(frozen=True)
class ThrottleRule:
    """A unit is throttled when it is busier than `load_pct` yet clocked more than `tolerance` below its cap.

    The tolerance absorbs DVFS table steps (a 2035.2 MHz cap prints as 2034 or 2035)."""

    load_pct: float = 80.0
    tolerance: float = 0.05


@dataclass(frozen=True)
class WindowSummary:
    """What one window says about power, energy, heat and clocks; None where the samples cannot tell."""

    samples: int
    clock: Clock | None
    span_s: float | None
    mean_power_w: float | None
    max_power_w: float | None
    energy_j: float | None
    energy_note: str | None
    energy_per_frame_j: float | None
    fps_per_w: float | None
    peak_temp_c: float | None
    peak_temp_sensor: str | None
    throttled: bool
    throttle_reason: str | None
    throttled_samples: int
    #: lines that were no good measurement: unparsable, impossible values dropped, or no total power
    bad_samples: int = 0

    def to_rows(self) -> Iterator[tuple[str, float, str]]:
        """(metric, value, unit) for the results table; metrics the samples could not give are left out."""
        yield "telemetry_samples", float(self.samples), "count"
        yield "telemetry_bad_samples", float(self.bad_samples), "count"
        values = (
            ("power_mean", self.mean_power_w, "W"),
            ("power_max", self.max_power_w, "W"),
            ("energy", self.energy_j, "J"),
            ("energy_per_frame", self.energy_per_frame_j, "J/frame"),
            ("fps_per_w", self.fps_per_w, "fps/W"),
            ("temperature_peak", self.peak_temp_c, "°C"),
        )
        for metric, value, unit in values:
            if value is not None:
                yield metric, value, unit
        yield "throttled", float(self.throttled), "bool"


def trapezoid(points: Sequence[tuple[float, float]]) -> float:
    """Integral of (t, y) points by the trapezoid rule; zero-width steps add nothing."""
    return sum((t1 - t0) * (y0 + y1) / 2 for (t0, y0), (t1, y1) in pairwise(points))


def _power_points(samples: Sequence[TimedSample], rule: str) -> list[tuple[float, float]]:
    points = []
    for timed in samples:
        mw = timed.sample.total_power_mw(rule)
        if mw is not None:
            points.append((timed.t_s, mw / 1000.0))
    return points


def _energy(points: list[tuple[float, float]]) -> tuple[float | None, float | None, str | None]:
    """(energy J, span s, why energy is missing)."""
    if len(points) < 2:
        return None, None, f"{len(points)} power sample(s); energy needs at least 2"
    span = points[-1][0] - points[0][0]
    if span <= 0:
        return None, None, "all power samples share one timestamp"
    return trapezoid(points), span, None


def _energy_within(points: list[tuple[float, float]], span: tuple[float, float],
                   ) -> tuple[float | None, float | None, str | None]:
    """Energy over the part of `span` the samples cover, power interpolated linearly between samples (so
    the samples just outside the span shape its edges); (energy J, covered s, note)."""
    start, end = span
    inside = sum(1 for t, _ in points if start <= t <= end)
    if inside < 2:
        return None, None, f"{inside} power sample(s) inside the span; energy needs at least 2"
    first, last = max(start, points[0][0]), min(end, points[-1][0])
    grid = [first, *(t for t, _ in points if first < t < last), last]
    times = [t for t, _ in points]
    watts = [w for _, w in points]
    energy = trapezoid([(t, float(np.interp(t, times, watts))) for t in grid])
    covered = last - first
    note = None
    if covered < (end - start) * COVERAGE_WARN:
        note = f"samples cover {covered:.2f} s of the {end - start:.2f} s span"
    return energy, covered, note


def _peak_temperature(samples: Sequence[TimedSample]) -> tuple[float | None, str | None]:
    readings = [(value, name) for timed in samples for name, value in timed.sample.temps_c.items()
                if name not in IGNORED_SENSORS]
    if not readings:
        return None, None
    value, name = max(readings, key=lambda reading: reading[0])
    return value, name


def _below(freq: float | None, cap: float, rule: ThrottleRule) -> bool:
    """A clock of 0 (Orin JP5 prints `GR3D_FREQ 31%@0`) means 'not read', not 'stopped'."""
    return freq is not None and freq > 0 and freq < cap * (1 - rule.tolerance)


def throttle_evidence(sample: TegrastatsSample, mode: PowerMode, rule: ThrottleRule) -> str | None:
    """Why this sample looks throttled (first busy unit below its cap), or None."""
    for core in sample.cpus:
        busy = core.load_pct is not None and core.load_pct > rule.load_pct
        if busy and _below(core.freq_mhz, mode.cpu_max_mhz, rule):
            return (f"cpu{core.index} at {core.freq_mhz:g} MHz under {core.load_pct:g}% load; "
                    f"{mode.name} allows {mode.cpu_max_mhz:g} MHz")
    gpu_load = sample.gpu_util_pct
    if gpu_load is not None and gpu_load > rule.load_pct and _below(sample.gpu_freq_mhz, mode.gpu_max_mhz, rule):
        return (f"GPU at {sample.gpu_freq_mhz:g} MHz under {gpu_load:g}% load; "
                f"{mode.name} allows {mode.gpu_max_mhz:g} MHz")
    return None


def summarize(
    samples: Sequence[TimedSample],
    *,
    frames: int | None = None,
    duration_s: float | None = None,
    profile: DeviceProfile,
    mode: PowerMode | int | str,
    span: tuple[float, float] | None = None,
    throttle: ThrottleRule | None = None,
) -> WindowSummary:
    """Reduce a window's samples, or only what falls in `span` (start, end on the samples' clock: a phase).

    Mean power is time-weighted (energy / covered time) so that J/frame and FPS/W, both computed from it
    over `duration_s` (default: the span, else the sample span), agree with the energy; without energy
    it is the plain mean of the samples and J/frame, FPS/W stay None. `frames` are the frames of that
    same interval: energy of one phase is never divided by another phase's frames."""
    power_mode = mode if isinstance(mode, PowerMode) else profile.mode(mode)
    all_points = _power_points(samples, profile.telemetry.total_power)
    if span is not None:
        samples = [t for t in samples if span[0] <= t.t_s <= span[1]]
    bad = sum(1 for t in samples if t.sample.problems or t.sample.junk or (all_points and t.sample.parsed
                                                          and t.sample.total_power_mw(profile.telemetry.total_power)
                                                          is None))
    samples = [t for t in samples if t.sample.parsed]
    points = _power_points(samples, profile.telemetry.total_power)
    energy_j, span_s, note = _energy(points) if span is None else _energy_within(all_points, span)
    if not all_points:
        note = "no total power in the samples (tegrastats shows rails only as root on some boards)"
    mean_w = energy_j / span_s if energy_j is not None and span_s else (fmean(w for _, w in points) if points else None)
    per_frame = fps_per_w = None
    duration = duration_s if duration_s is not None else (span[1] - span[0]) if span is not None else span_s
    if energy_j is not None and frames and duration and mean_w:
        per_frame = mean_w * duration / frames
        fps_per_w = frames / duration / mean_w
    rule = throttle or ThrottleRule()
    reasons = [r for r in (throttle_evidence(t.sample, power_mode, rule) for t in samples) if r]
    peak_c, peak_sensor = _peak_temperature(samples)
    return WindowSummary(
        samples=len(samples),
        clock=samples[0].clock if samples else None,
        span_s=span_s,
        mean_power_w=mean_w,
        max_power_w=max(w for _, w in points) if points else None,
        energy_j=energy_j,
        energy_note=note,
        energy_per_frame_j=per_frame,
        fps_per_w=fps_per_w,
        peak_temp_c=peak_c,
        peak_temp_sensor=peak_sensor,
        throttled=bool(reasons),
        throttle_reason=reasons[0] if reasons else None,
        throttled_samples=len(reasons),
        bad_samples=bad,
    )


class Sampler(Protocol):
    """A board-side command printing one sample per line (tegrastats, or jtop through jetson-stats' client)."""

    def command(self, board: Board, interval_ms: int) -> str: ...

    def parse(self, line: str) -> tuple[TegrastatsSample, float | None] | None:
        """The sample on this line and the board's time stamped on it (None when the line has no stamp)."""


class TegrastatsSampler:
    """tegrastats (line-buffered, as root where it needs to be), each line stamped on the board."""

    def command(self, board: Board, interval_ms: int) -> str:
        return f"{board.tegrastats_command(interval_ms, line_buffered=True)} | python3 -u -c {shlex.quote(STAMPER)}"

    def parse(self, line: str) -> tuple[TegrastatsSample, float | None] | None:
        if not line.strip():
            return None
        stamp, _, rest = line.partition(" ")
        try:
            board_time = float(stamp)
        except ValueError:  # not stamped: a line that bypassed the stamper
            return parse_line(line), None
        return parse_line(rest), board_time


@dataclass(frozen=True)
class Received:
    """A sample with the host's monotonic receive time (seconds since the window started) and the board's
    time stamped on it, when it was."""

    sample: TegrastatsSample
    received_s: float
    board_time: float | None = None


def timed(received: Sequence[Received]) -> list[TimedSample]:
    """Put samples on one clock: the board's stamps when every sample has one; else tegrastats' own stamps
    (`MM-DD-YYYY HH:MM:SS`, whole seconds, so only when every sample has one and no two share a second);
    else receive times."""
    if received and all(r.board_time is not None for r in received):
        return [TimedSample(r.sample, r.board_time, "board") for r in received]  # type: ignore[arg-type]
    stamps = [r.sample.timestamp for r in received if r.sample.timestamp is not None]
    if received and len(stamps) == len(received) and all(a < b for a, b in pairwise(stamps)):
        first = stamps[0]
        return [TimedSample(r.sample, (s - first).total_seconds(), "tegrastats")
                for r, s in zip(received, stamps, strict=True)]
    start = received[0].received_s if received else 0.0
    return [TimedSample(r.sample, r.received_s - start, "host") for r in received]


@dataclass
class TelemetryWindow:
    """Sample `board` from start() to stop(), or across a `with` block, on a background reader thread.

    `max_s` bounds the sampler's whole run on the board, so a window left open cannot sample forever."""

    board: Board
    interval_ms: int = 100
    sampler: Sampler = field(default_factory=TegrastatsSampler)
    max_s: float = 3600.0
    result: list[TimedSample] | None = field(default=None, init=False)
    _received: list[Received] = field(default_factory=list, init=False, repr=False)
    _stream: StreamingCommand | None = field(default=None, init=False, repr=False)
    _reader: threading.Thread | None = field(default=None, init=False, repr=False)
    _error: Exception | None = field(default=None, init=False, repr=False)
    _started: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def start(self) -> TelemetryWindow:
        if self._stream is not None:
            raise HarnessError(f"{self.board.name}: a telemetry window starts only once")
        command = self.sampler.command(self.board, self.interval_ms)
        self._started = time.monotonic()
        self._stream = self.board.transport.stream(command, timeout=self.max_s)
        self._reader = threading.Thread(target=self._read, args=(self._stream,), daemon=True,
                                        name=f"telemetry-{self.board.name}")
        self._reader.start()
        return self

    def _read(self, stream: StreamingCommand) -> None:
        try:
            for line in stream.lines():
                parsed = self.sampler.parse(line)
                if parsed is not None:
                    with self._lock:
                        self._received.append(Received(parsed[0], time.monotonic() - self._started, parsed[1]))
        except Exception as exc:  # stop() re-raises it on the caller's thread
            self._error = exc

    def samples(self) -> list[TimedSample]:
        """What arrived so far, without stopping."""
        with self._lock:
            return timed(self._received)

    def stop(self) -> list[TimedSample]:
        """Stop the sampler, wait (bounded) for the reader, and return the samples on one clock."""
        if self.result is not None:
            return self.result
        if self._stream is None or self._reader is None:
            raise HarnessError(f"{self.board.name}: telemetry window was never started")
        self._stream.stop()
        self._reader.join(_STOP_JOIN_S)
        if self._reader.is_alive():
            log.warning("%s: telemetry reader still busy after %.0fs; keeping what arrived",
                        self.board.name, _STOP_JOIN_S)
        if self._error is not None:
            raise HarnessError(f"{self.board.name}: telemetry sampling failed: {self._error}") from self._error
        self.result = self.samples()
        return self.result

    def summary(self, *, mode: PowerMode | int | str, frames: int | None = None,
                duration_s: float | None = None) -> WindowSummary:
        """Summarize the stopped window with the board's own profile."""
        return summarize(self.stop(), frames=frames, duration_s=duration_s, profile=self.board.profile, mode=mode)

    def __enter__(self) -> TelemetryWindow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

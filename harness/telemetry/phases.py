"""A bench run's figures per phase: the telemetry window cut to each measured phase, every figure reduced
over the rounds to its median and spread.

The module's bench reports each phase (raw, pipeline; one of each per round) with its start and end on
the board's clock and the frames it covered. Power, energy, J/frame and FPS/W of a phase come from the
samples inside it and that phase's own frames: engine build, calibration, warm-up and the other phase
never enter them. A figure's spread is the median absolute deviation of its per-round values relative to
their median, which the baseline gate uses as the run's own noise.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from harness.profiles import DeviceProfile, PowerMode
from harness.telemetry.window import TimedSample, summarize

PERCENTILES = ("p50", "p90", "p95", "p99")
#: figures that are a peak or a flag over the rounds, and the sample count that adds up; the rest take the median
_MAXIMUM = frozenset({"power_max", "temperature_peak", "throttled"})
_TOTAL = frozenset({"telemetry_samples", "telemetry_bad_samples"})


@dataclass(frozen=True)
class Figure:
    """One figure of a run: what phase it covers (None: the run as a whole), its value and spread."""

    phase: str | None
    metric: str
    value: float
    unit: str
    spread: float | None

    def row(self) -> tuple[str, float, str, float | None]:
        return self.metric, self.value, self.unit, self.spread


def reduce_rounds(metric: str, values: Sequence[float]) -> tuple[float, float | None]:
    """(value, spread) over the rounds: the median and the median absolute deviation relative to it (one
    disturbed round moves neither); peaks and flags take the maximum and counts the sum, without a spread."""
    if metric in _MAXIMUM:
        return max(values), None
    if metric in _TOTAL:
        return float(sum(values)), None
    median = statistics.median(values)
    if len(values) < 2:
        return median, None
    deviation = statistics.median(abs(v - median) for v in values)
    return median, deviation / abs(median) if median else 0.0


def bench_figures(bench: dict, samples: Sequence[TimedSample], profile: DeviceProfile,
                  mode: PowerMode) -> tuple[list[Figure], list[str]]:
    """The figures of one `python -m module bench` document with the telemetry of its window, and notes on
    what telemetry could not give (a phase without power samples, samples without board time)."""
    per_round: dict[tuple[str | None, str, str], list[float]] = defaultdict(list)
    for one in bench["rounds"]:
        per_round["raw", "raw_fps", "fps"].append(one["raw_fps"])
        per_round["pipeline", "pipeline_fps", "fps"].append(one["pipeline_fps"])
        per_round[None, "pipeline_vs_raw", "ratio"].append(one["ratio"])
        per_round["pipeline", "pipeline_engine_busy", "ratio"].append(one["engine_busy"])
        for p in PERCENTILES:
            per_round["raw", f"latency_{p}", "ms"].append(one["latency_ms"][p])
            per_round["pipeline", f"e2e_latency_{p}", "ms"].append(one["e2e_latency_ms"][p])
    notes: list[str] = []
    if samples and samples[0].clock != "board":
        notes.append(f"telemetry samples carry {samples[0].clock} time, not the board's: no per-phase power")
    else:
        for phase in bench["phases"]:
            span = (phase["start"], phase["end"])
            summary = summarize(samples, span=span, frames=phase["frames"], duration_s=span[1] - span[0],
                                profile=profile, mode=mode)
            for metric, value, unit in summary.to_rows():
                per_round[phase["phase"], metric, unit].append(value)
            if summary.energy_note:
                notes.append(f"{phase['phase']} round {phase['round']}: {summary.energy_note}")
    figures = []
    for (phase, metric, unit), values in per_round.items():
        value, spread = reduce_rounds(metric, values)
        figures.append(Figure(phase, metric, value, unit, spread))
    return figures, notes


#: a wait longer than this share of its phase is a stall, when it is also STALL_FACTOR x the phase's typical wait
#: and at least STALL_MIN_S (a shared machine's scheduler hiccups are a few hundred ms: noise, not a stall)
STALL_SHARE = 0.2
STALL_FACTOR = 10.0
STALL_MIN_S = 1.0
#: telemetry may miss this many sampling intervals in a row (and STALL_MIN_S) before a phase's power is not trusted
TELEMETRY_GAP_INTERVALS = 5


def stalls(bench: dict, samples: Sequence[TimedSample], interval_s: float) -> list[str]:
    """Why this measurement is not a valid figure: a phase in which no frame came for too long (a stalled board
    or link), or in which telemetry went quiet; empty when it is valid."""
    reasons = []
    times = [s.t_s for s in samples if s.sample.parsed] if samples and samples[0].clock == "board" else []
    for phase in bench["phases"]:
        where = f"{phase['phase']} round {phase['round'] + 1}"
        length = phase["end"] - phase["start"]
        gap, typical = phase["longest_gap_s"], phase["typical_gap_s"]
        if gap > max(STALL_SHARE * length, STALL_FACTOR * typical, STALL_MIN_S):
            reasons.append(f"{where}: no frame for {gap:.2f} s of a {length:.2f} s phase (typically {typical:.3f} s)")
        if times:
            inside = [phase["start"], *(t for t in times if phase["start"] < t < phase["end"]), phase["end"]]
            quiet = max(b - a for a, b in pairwise(inside))
            if quiet > max(TELEMETRY_GAP_INTERVALS * interval_s, STALL_SHARE * length, STALL_MIN_S):
                reasons.append(f"{where}: no telemetry sample for {quiet:.2f} s (sampling every {interval_s:g} s)")
    return reasons

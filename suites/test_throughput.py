"""Throughput per power mode, batch size and precision, with clocks locked, joined with board telemetry.

For each selected power mode (``--power-mode``; default: the profile's default and max modes) the
board is switched, clocks are locked with jetson_clocks, and the module's bench runs ``--rounds``
rounds of raw engine throughput and end-to-end pipeline throughput after warm-up (MLPerf
SingleStream-style latency at batch 1, Offline-style throughput at larger batches) while tegrastats
(or jtop, ``--telemetry jtop``) samples power, clocks and temperatures. Power, energy, J/frame and
FPS/W are computed per phase from the samples inside it and that phase's own frames. Every figure is
the median over the rounds, with its spread.

Each test measures (``measure_valid``: a bench with its telemetry, once more when invalid), records (``record``:
results.csv, benchmark.json) and judges (``judge``). Judged: the power mode must still be the one applied when the
bench ends; the floors of the profile and of lab.yaml (for this backend and device, on measured figures only); and
with ``--baseline`` the regression gate of ``suites/regression.yaml`` against the newest earlier passing figure of
the same configuration (in --report-dir or the history).

Where the board has JetPack's trtexec and the module ran TensorRT, trtexec also runs the module's own engine at
the same batch: its throughput is the limit, and `raw_over_trtexec` says how close the module's raw FPS comes to
it (NVIDIA's jetson_benchmarks judge boards with trtexec). Elsewhere a `trtexec_available` row of 0 says so.

A board whose CPU is emulated (qemu-user: it lists `emulated-cpu` among what it does not measure) is skipped, with
the board's own word on its CPU: its FPS describe neither a Jetson nor the host.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from harness.board import Board
from harness.board.guard import PowerGuard
from harness.deploy import ModuleHandle
from harness.errors import CommandTimeout, HarnessError, TransportError
from harness.gates import BaselineGate, check_floors
from harness.profiles import DeviceProfile, PowerMode, ThroughputFloor
from harness.results import (
    EMULATED_CPU,
    BenchmarkFile,
    ResultsWriter,
    Row,
    RowContext,
    benchmark_entry,
    observations,
    read_differences,
)
from harness.telemetry.phases import Figure, bench_figures, stalls
from harness.telemetry.sources import sampler_for
from harness.telemetry.window import TelemetryWindow, TimedSample
from harness.trtexec import limit_rows

WARMUP_ITERATIONS = 10
#: a measurement found invalid (a stall, telemetry gone quiet, the link broken) is taken once more, then failed
MEASUREMENT_ATTEMPTS = 2


@pytest.fixture(scope="module", autouse=True)
def native_cpu(board: Board, modeled: frozenset[str]) -> None:
    """Skip before anything is deployed where the board's CPU is emulated."""
    if EMULATED_CPU in modeled:
        cpu = next((line for line in read_differences(board) if line.startswith("cpu:")), "its CPU is emulated")
        pytest.skip(f"throughput on {board.name} is meaningless: {cpu}")


@pytest.fixture(scope="module")
def quiet_module(deployed: ModuleHandle, board: Board) -> Iterator[ModuleHandle]:
    """The service's own pipeline paused so that the bench has the board to itself; resumed after (journaled:
    a harness killed meanwhile leaves a module that the board's watchdog resumes)."""
    resume = deployed.api_call_on_board("/start", "POST")
    board.state.change("module paused", resume, lambda: deployed.api("/stop", "POST"))
    try:
        yield deployed
    finally:
        board.state.revert(resume)


@pytest.fixture
def mode_applied(power_guard: PowerGuard, power_mode: PowerMode) -> PowerMode:
    """Switch to the test's power mode (the board skips it when already there) and lock clocks at its maximum."""
    power_guard.set_mode(power_mode.id)
    power_guard.lock_clocks()
    return power_mode


def measure(module: ModuleHandle, board: Board, mode: PowerMode, args: list[str], interval_ms: int,
            timeout: float, source: str) -> tuple[dict | None, list[TimedSample], list[str]]:
    """One bench with its `source` telemetry window: (bench document, samples, why it is not a valid
    measurement)."""
    window = TelemetryWindow(board, interval_ms=interval_ms, sampler=sampler_for(source))
    try:
        with window:
            run = module.run_module(args, timeout=timeout)
    except CommandTimeout as exc:  # the transport has killed the bench on the board
        return None, [], [f"the bench stalled ({exc})"]
    except TransportError as exc:  # the transport has killed the bench on the board, over a new connection
        return None, [], [f"the link to {board.name} broke during the bench ({exc})"]
    except HarnessError as exc:
        return None, [], [f"telemetry lost during the bench ({exc})"]
    if not run.ok:
        pytest.fail(f"bench on {board.name} failed (exit {run.exit_code}): {run.stderr.strip()[-800:]}",
                    pytrace=False)
    after = board.power_mode()
    if after.id != mode.id:
        pytest.fail(f"{board.name}: the power mode changed under the measurement ({mode.name} → {after.name});"
                    " its figures are invalid and were not recorded", pytrace=False)
    bench = json.loads(run.stdout)
    samples = window.stop()
    return bench, samples, stalls(bench, samples, interval_ms / 1000)


@dataclass(frozen=True)
class Measurement:
    """One valid bench of a configuration: the bench's document, the telemetry inside it, and how many attempts."""

    bench: dict
    samples: list[TimedSample]
    attempts: int


def measure_valid(module: ModuleHandle, board: Board, mode: PowerMode, args: list[str], interval_ms: int,
                  duration: float, source: str, label: str) -> Measurement:
    """Bench until one measurement is valid (a stall, telemetry gone quiet or a broken link invalidates it), at most
    MEASUREMENT_ATTEMPTS times; fail the test when none was."""
    tried: list[str] = []
    for attempt in range(1, MEASUREMENT_ATTEMPTS + 1):
        bench, samples, invalid = measure(module, board, mode, args, interval_ms, 300 + 4 * duration, source)
        if bench is not None and not invalid:
            return Measurement(bench, samples, attempt)
        tried.append(f"attempt {attempt}: " + "; ".join(invalid))
        warnings.warn(f"{label}: invalid measurement, "
                      f"{'measuring again' if attempt < MEASUREMENT_ATTEMPTS else 'giving up'}: {tried[-1]}",
                      stacklevel=1)
    pytest.fail(f"{board.name}: no valid measurement in {MEASUREMENT_ATTEMPTS} attempts, nothing recorded: "
                + " | ".join(tried), pytrace=False)


def record(measured: Measurement, board: Board, mode: PowerMode, batch: int, precision: str, duration: float,
           context: RowContext, modeled: frozenset[str], results: ResultsWriter, benchmarks: BenchmarkFile,
           telemetry_source: str) -> tuple[list[Row], list[str]]:
    """The measurement's figures, each with its phase, into results.csv (trtexec's limit beside them where the board
    has it) and its latencies into benchmark.json: (the rows, notes on the telemetry)."""
    bench = measured.bench
    figures, notes = bench_figures(bench, measured.samples, board.profile, mode)
    figures.append(Figure(None, "measurement_attempts", float(measured.attempts), "count", None))
    rows = [row for f in figures for row in observations(replace(context, phase=f.phase), [f.row()], modeled)]
    results.write_all(rows)
    limit = limit_rows(board, bench, batch, duration, context)
    results.write_all(limit.rows)
    if limit.failed:
        notes.append(limit.line)
    else:
        print(limit.line)
    by_phase = {(r.phase, r.metric): r.value for r in rows}
    benchmarks.add(benchmark_entry(
        f"throughput[{mode.name}-b{batch}-{precision}]", [ms / 1000.0 for ms in bench["raw_latencies_ms"]],
        group=f"{board.profile.name} {bench['backend']} ({bench['device']})",
        params={"power_mode": mode.name, "batch": batch, "precision": precision},
        extra_info={"raw_fps": bench["raw_fps"], "pipeline_fps": bench["pipeline_fps"],
                    "quantizer": bench["quantizer"], "power_source": "modeled" if "power" in modeled else "measured",
                    "telemetry": telemetry_source,
                    **{f"{phase}_{metric}": by_phase[phase, metric]
                       for phase in ("raw", "pipeline") for metric in ("power_mean", "energy_per_frame", "fps_per_w")
                       if (phase, metric) in by_phase}},
    ))
    return rows, notes


def judge(rows: list[Row], context: RowContext, profile: DeviceProfile, floors: list[ThroughputFloor], rounds: int,
          telemetry_source: str, baseline_gate: BaselineGate | None) -> list[str]:
    """What is wrong with these figures: too few telemetry samples inside a phase, a floor (the profile's or the
    lab's) not reached, a figure regressed against the baseline."""
    by_phase = {(r.phase, r.metric): r for r in rows}
    problems = []
    for phase in ("raw", "pipeline"):
        count = by_phase.get((phase, "telemetry_samples"))
        if count is None or count.value < 2 * rounds:
            problems.append(f"{phase}: {telemetry_source} gave {count.value if count else 0:.0f} samples inside "
                            f"{rounds} round(s); at least 2 per round are needed")
    assert context.power_mode and context.precision and context.batch and context.backend and context.device
    checks = check_floors(floors, profile, profile.mode(context.power_mode), context.precision, context.batch,
                          backend=context.backend, device=context.device,
                          figures={r.metric: (r.value, r.source) for r in rows})
    problems += [f"below the lab's floor: {check.describe()}" for check in checks if check.failed]
    for check in checks:
        if check.not_applicable:
            print(check.describe())
    if baseline_gate is not None:
        comparisons = baseline_gate.check(rows)
        if not comparisons:
            print(f"the baseline ({baseline_gate.baseline.describe()}) has no figure of this configuration: "
                  "nothing gated")
        problems += [f"regression: {c.describe()}" for c in comparisons if c.regressed]
    return problems


def test_throughput(request: pytest.FixtureRequest, baseline_gate: BaselineGate | None,
                    floors: list[ThroughputFloor], quiet_module: ModuleHandle, module_info: dict, board: Board,
                    mode_applied: PowerMode, batch: int, precision: str, results: ResultsWriter,
                    row_context: RowContext, modeled: frozenset[str], benchmarks: BenchmarkFile,
                    telemetry_source: str, telemetry_interval_ms: int) -> None:
    """Measure, record, judge; the gates' inputs (baseline, floors) are read first: one that cannot be read fails
    the test before anything is deployed."""
    if precision not in module_info["precisions"]:
        pytest.skip(f"{module_info['backend']} on {board.name} runs {', '.join(module_info['precisions'])} only")
    duration, rounds = request.config.getoption("--duration"), request.config.getoption("--rounds")
    args = ["bench", "--duration", f"{duration / rounds:g}", "--rounds", str(rounds), "--batch", str(batch),
            "--warmup", str(WARMUP_ITERATIONS), "--precision", precision, "--backend", module_info["backend"]]
    label = f"{board.name} {mode_applied.name} b{batch} {precision}"
    measured = measure_valid(quiet_module, board, mode_applied, args, telemetry_interval_ms, duration,
                             telemetry_source, label)
    bench = measured.bench
    context = replace(row_context, power_mode=mode_applied.name, precision=precision, batch=batch,
                      backend=bench["backend"], device=bench["device"], quantizer=bench["quantizer"])
    rows, notes = record(measured, board, mode_applied, batch, precision, duration, context, modeled, results,
                         benchmarks, telemetry_source)
    for note in notes:
        warnings.warn(f"{label}: {note}", stacklevel=1)
    problems = judge(rows, context, board.profile, floors, rounds, telemetry_source, baseline_gate)
    assert not problems, "\n".join(problems)

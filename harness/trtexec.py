"""Read trtexec's performance summary (TensorRT 8.x to 10.x) into numbers a report can use.

trtexec's "qps" counts queries, i.e. batches: images per second is qps times the batch size.
TensorRT 8.x prints only the 99th percentile plus "Average on N runs" trace lines; 8.6 and 10.x
print the 90/95/99th percentiles by default. Percentiles are kept as printed, keyed by percent.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace

from harness.board import Board
from harness.errors import HarnessError, ParseError
from harness.results import Row, RowContext
from harness.transport.base import Transport

_NUM = r"[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_THROUGHPUT_RE = re.compile(rf"Throughput:\s*({_NUM}) qps", re.IGNORECASE)  # 7.x prints "throughput:"
_STATS_RE = re.compile(
    r"(?P<label>End-to-End Host Latency|GPU Compute Time|Enqueue Time|H2D Latency|D2H Latency|Latency): "
    rf"min = (?P<min>{_NUM}) ms, max = (?P<max>{_NUM}) ms, mean = (?P<mean>{_NUM}) ms, "
    rf"median = (?P<median>{_NUM}) ms(?P<percentiles>(?:, percentile\({_NUM}%\) = {_NUM} ms)*)"
)
_PERCENTILE_RE = re.compile(rf"percentile\(({_NUM})%\) = ({_NUM}) ms")
_WALLTIME_RE = re.compile(rf"Total Host Walltime: ({_NUM}) s")
_TOTAL_GPU_RE = re.compile(rf"Total GPU Compute Time: ({_NUM}) s")
_VERSION_RE = re.compile(r"\[TensorRT v([0-9]{3,9})\]")
_WARNING_RE = re.compile(r"\[W\] (.*)$", re.MULTILINE)
_AVERAGE_RE = re.compile(
    rf"Average on (?P<runs>[0-9]+) runs - GPU latency: (?P<gpu>{_NUM}) ms - "
    rf"Host latency: (?P<host>{_NUM}) ms(?: \((?P<detail>[^)]*)\))?"
)
_AVERAGE_DETAIL_RE = re.compile(rf"(end to end|enqueue) ({_NUM}) ms")
_SUMMARY_MARK = "=== Performance summary ==="
_STATS_FIELDS = {
    "Latency": "latency",
    "GPU Compute Time": "gpu_compute",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "D2H Latency": "d2h",
    "End-to-End Host Latency": "end_to_end",
}


@dataclass(frozen=True)
class LatencyStats:
    """One `min/max/mean/median/percentile(N%)` line, in milliseconds."""

    min_ms: float
    max_ms: float
    mean_ms: float
    median_ms: float
    percentiles: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrtexecSummary:
    """The performance summary of one trtexec run; absent sections are None."""

    throughput_qps: float
    latency: LatencyStats | None = None
    gpu_compute: LatencyStats | None = None
    enqueue: LatencyStats | None = None
    h2d: LatencyStats | None = None
    d2h: LatencyStats | None = None
    end_to_end: LatencyStats | None = None
    total_host_walltime_s: float | None = None
    total_gpu_compute_s: float | None = None
    trt_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    average_runs: list[dict[str, float]] = field(default_factory=list)

    def images_per_s(self, batch: int) -> float:
        """trtexec counts queries (batches); a batch of N images is N images per query."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        return self.throughput_qps * batch


def parse_trt_version(text: str) -> str | None:
    """`[TensorRT v100900]` -> "10.9.0", `[TensorRT v8502]` -> "8.5.2" (NV_TENSORRT_VERSION encoding)."""
    m = _VERSION_RE.search(text)
    if m is None:
        return None
    number = int(m[1])
    major_unit = 10000 if number >= 100000 else 1000
    major, rest = divmod(number, major_unit)
    return f"{major}.{rest // 100}.{rest % 100}"


def _stats(m: re.Match[str]) -> LatencyStats:
    percentiles = {float(p): float(v) for p, v in _PERCENTILE_RE.findall(m["percentiles"])}
    return LatencyStats(float(m["min"]), float(m["max"]), float(m["mean"]), float(m["median"]), percentiles)


def _optional_float(pattern: re.Pattern[str], text: str) -> float | None:
    m = pattern.search(text)
    return float(m[1]) if m else None


def _warnings(text: str) -> list[str]:
    """`[W]` messages; an indented `[W]` line continues the warning before it."""
    warnings: list[str] = []
    for message in _WARNING_RE.findall(text):
        if message.startswith(" ") and warnings:
            warnings[-1] = f"{warnings[-1]} {message.strip()}"
        else:
            warnings.append(message.strip().removeprefix("* "))
    return warnings


def _average_runs(text: str) -> list[dict[str, float]]:
    """TensorRT 8.x trace lines `Average on N runs - GPU latency: ... (end to end ..., enqueue ...)`."""
    runs: list[dict[str, float]] = []
    for m in _AVERAGE_RE.finditer(text):
        run = {
            "runs": float(m["runs"]),
            "gpu_latency_ms": float(m["gpu"]),
            "host_latency_ms": float(m["host"]),
        }
        for name, value in _AVERAGE_DETAIL_RE.findall(m["detail"] or ""):
            run[f"{name.replace(' ', '_')}_ms"] = float(value)
        runs.append(run)
    return runs


def parse_summary(text: str) -> TrtexecSummary:
    """Parse trtexec output; the last performance summary wins when a log holds several runs."""
    summary = text[text.rfind(_SUMMARY_MARK) :] if _SUMMARY_MARK in text else text
    throughput = _THROUGHPUT_RE.search(summary)
    if throughput is None:
        raise ParseError("no trtexec performance summary found (expected 'Throughput: N qps')")
    stats = {_STATS_FIELDS[m["label"]]: _stats(m) for m in _STATS_RE.finditer(summary)}
    return TrtexecSummary(
        throughput_qps=float(throughput[1]),
        total_host_walltime_s=_optional_float(_WALLTIME_RE, summary),
        total_gpu_compute_s=_optional_float(_TOTAL_GPU_RE, summary),
        trt_version=parse_trt_version(text),
        warnings=_warnings(text),
        average_runs=_average_runs(text),
        **stats,
    )


#: where JetPack installs trtexec (the tensorrt samples package); NVIDIA's jetson_benchmarks judge boards with it
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"


def trtexec_command(engine: str, input_name: str, shape: tuple[int, ...], duration_s: float) -> str:
    """trtexec on an engine the module built, at the module's batch: `--shapes` picks the batch inside the engine's
    optimization profile; host↔device copies stay in, as they are in the module's raw figure."""
    dims = "x".join(str(int(d)) for d in shape)
    return (f"{TRTEXEC} --loadEngine={shlex.quote(engine)} --shapes={shlex.quote(input_name)}:{dims} "
            f"--warmUp=500 --duration={max(1, round(duration_s))}")


def run_trtexec(transport: Transport, board: str, engine: str, input_name: str, shape: tuple[int, ...],
                duration_s: float) -> TrtexecSummary:
    """trtexec's summary for `engine` on the board, or HarnessError naming the board and trtexec's last line."""
    command = trtexec_command(engine, input_name, shape, duration_s)
    result = transport.run(command, timeout=120 + 3 * duration_s)
    if not result.ok:
        said = (result.stdout + result.stderr).strip().splitlines()[-1:] or [f"exit {result.exit_code}"]
        raise HarnessError(f"{board}: trtexec on {engine} failed (exit {result.exit_code}): {said[0][:300]}")
    try:
        return parse_summary(result.stdout)
    except ParseError as exc:
        raise HarnessError(f"{board}: trtexec on {engine}: {exc}") from None


@dataclass(frozen=True)
class Limit:
    """trtexec beside one throughput measurement: its rows (phase trtexec), a line saying what it found, and whether
    trtexec was there to run but gave nothing usable (a warning: the module's own figures stand)."""

    rows: list[Row]
    line: str
    failed: bool = False


def limit_rows(board: Board, bench: dict, batch: int, duration_s: float, context: RowContext) -> Limit:
    """trtexec's images/s on the engine the module's `bench` ran, and the module's raw FPS over it; or one
    `trtexec_available` row of 0 where there is none, saying why."""
    context = replace(context, phase="trtexec")
    engine = bench.get("engine")

    def absent(why: str, failed: bool = False) -> Limit:
        return Limit([context.row("trtexec_available", 0, "bool")], f"trtexec not run: {why}", failed)

    if not board.stack().trtexec:
        return absent(f"no trtexec on {board.name} ({TRTEXEC})")
    if bench["backend"] != "tensorrt" or not engine:
        return absent(f"the {bench['backend']} backend builds no TensorRT engine")
    if not board.transport.run(f"test -f {shlex.quote(engine)}", timeout=15).ok:
        return absent(f"the module's engine {engine} is not on {board.name}'s filesystem (the module runs in a "
                      "container)")
    shape = (batch, 3, *bench["input_hw"])
    try:
        summary = run_trtexec(board.transport, board.name, engine, bench["input_name"], shape, duration_s)
    except HarnessError as exc:
        return absent(str(exc), failed=True)
    limit = summary.images_per_s(batch)
    if limit <= 0:
        return absent(f"{board.name}: trtexec on {engine} measured {summary.throughput_qps} qps", failed=True)
    ratio = bench["raw_fps"] / limit
    version = f" {summary.trt_version}" if summary.trt_version else ""
    return Limit([context.row("trtexec_available", 1, "bool"), context.row("trtexec_fps", limit, "fps"),
                  context.row("raw_over_trtexec", ratio, "ratio")],
                 f"trtexec{version} on {engine}: {limit:.1f} images/s; the module's raw {bench['raw_fps']:.1f} FPS "
                 f"is {ratio:.2f} of it")

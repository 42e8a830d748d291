"""trtexec summary parser against real TensorRT 10.9 and 8.2 output in tests/data/jetson/trtexec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.trtexec import LatencyStats, parse_summary, parse_trt_version

DATA = Path(__file__).parent / "data" / "jetson" / "trtexec"
TRT10 = (DATA / "trt10.9-summary.txt").read_text()
TRT8 = (DATA / "trt8.2-summary-partial.txt").read_text()


def test_trt10_throughput_and_percentiles() -> None:
    s = parse_summary(TRT10)
    assert s.throughput_qps == 691.435
    assert s.latency is not None
    assert s.latency.percentiles == {90.0: 1.45624, 95.0: 1.71796, 99.0: 2.61597}
    assert (s.latency.min_ms, s.latency.max_ms, s.latency.mean_ms, s.latency.median_ms) == (
        1.4209,
        3.047,
        1.48372,
        1.43823,
    )
    assert s.gpu_compute is not None
    assert s.gpu_compute.median_ms == 1.39775
    assert s.gpu_compute.percentiles[99.0] == 2.57642


def test_trt10_other_sections() -> None:
    s = parse_summary(TRT10)
    assert s.enqueue is not None and s.enqueue.median_ms == 0.259033
    assert s.h2d is not None and s.h2d.max_ms == 0.0687256
    assert s.d2h == LatencyStats(
        0.00286865, 0.00561523, 0.00387057, 0.00366211, {90.0: 0.00488281, 95.0: 0.00500488, 99.0: 0.00537109}
    )
    assert s.end_to_end is None
    assert s.total_host_walltime_s == 3.0039
    assert s.total_gpu_compute_s == 2.9983
    assert s.average_runs == []


def test_trt10_version_from_the_passed_line_in_the_file() -> None:
    assert "&&&& PASSED TensorRT.trtexec [TensorRT v100900]" in TRT10
    assert parse_summary(TRT10).trt_version == "10.9.0"


def test_trt10_warning_with_its_continuation_line() -> None:
    (warning,) = parse_summary(TRT10).warnings
    assert warning.startswith("GPU compute time is unstable, with coefficient of variance = 13.1794%.")
    assert warning.endswith("adding --useSpinWait may improve the stability.")


def test_trt8_only_99th_percentile_and_end_to_end() -> None:
    s = parse_summary(TRT8)
    assert s.throughput_qps == 28.9757
    assert s.latency is not None
    assert s.latency.percentiles == {99.0: 36.1511}
    assert s.latency.median_ms == 34.916
    assert s.end_to_end is not None
    assert s.end_to_end.median_ms == 34.9216
    assert s.end_to_end.percentiles == {99.0: 36.156}
    assert (s.gpu_compute, s.enqueue, s.h2d, s.d2h) == (None, None, None, None)
    assert s.total_host_walltime_s is None
    assert s.trt_version is None  # this capture is cut before the PASSED line
    assert s.warnings == [
        "Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be under-utilized."
    ]


def test_trt8_average_runs() -> None:
    assert parse_summary(TRT8).average_runs == [
        {
            "runs": 10.0,
            "gpu_latency_ms": 33.6895,
            "host_latency_ms": 35.1783,
            "end_to_end_ms": 35.1835,
            "enqueue_ms": 34.6011,
        }
    ]


def test_trt86_average_run_without_end_to_end() -> None:
    # The TRT 8.6 trace line quoted in /work/shared/research/jetson_facts.md section 4.3.
    line = "[I] Average on 10 runs - GPU latency: 23.3051 ms - Host latency: 28.7206 ms (enqueue 0.771973 ms)"
    s = parse_summary(line + "\n[I] Throughput: 1 qps\n")
    assert s.average_runs == [
        {"runs": 10.0, "gpu_latency_ms": 23.3051, "host_latency_ms": 28.7206, "enqueue_ms": 0.771973}
    ]


@pytest.mark.parametrize(
    ("line", "version"),
    [
        # Verbatim from /work/shared/research/jetson_facts.md section 4.3.
        ("&&&& PASSED TensorRT.trtexec [TensorRT v100900] # trtexec ...", "10.9.0"),
        # Synthetic: the same line as TensorRT 8.x writes it (major*1000 + minor*100 + patch).
        ("&&&& PASSED TensorRT.trtexec [TensorRT v8502] # trtexec --onnx=model.onnx", "8.5.2"),
        ("&&&& PASSED TensorRT.trtexec [TensorRT v8601]", "8.6.1"),
        ("no version here", None),
    ],
)
def test_version_parser(line: str, version: str | None) -> None:
    assert parse_trt_version(line) == version


def test_last_summary_wins() -> None:
    s = parse_summary(TRT8 + TRT10)
    assert s.throughput_qps == 691.435
    assert s.end_to_end is None
    assert len(s.average_runs) == 1


def test_images_per_second_scales_queries_by_batch() -> None:
    s = parse_summary(TRT8)
    assert s.images_per_s(1) == 28.9757
    assert s.images_per_s(8) == pytest.approx(28.9757 * 8)
    with pytest.raises(ValueError):
        s.images_per_s(0)


def test_no_summary_raises_parse_error() -> None:
    expected = "no trtexec performance summary found (expected 'Throughput: N qps')"
    with pytest.raises(ParseError, match=re.escape(expected)):
        parse_summary("[I] Starting inference\n[E] Error[1]: engine failed to build\n")

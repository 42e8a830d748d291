"""Results table: durable appends (SIGKILL, concurrent workers), measured vs modeled, pytest-benchmark JSON."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.board.board import Board
from harness.errors import HarnessError
from harness.profiles import get_profile
from harness.results import (
    FIELDS,
    BenchmarkFile,
    ResultsWriter,
    Row,
    RowContext,
    benchmark_entry,
    modeled_metrics,
    observations,
    read_modeled,
    read_results,
    source_of,
    write_benchmark_json,
)
from harness.results.benchmark import latency_stats
from harness.telemetry.tegrastats import parse_file
from harness.telemetry.window import TimedSample, summarize
from harness.transport.local import LocalTransport
from harness.virtual.recipe import BoardContext

ROOT = Path(__file__).parents[1]
CONTEXT = RowContext(run="r1", board="orin-01", profile="agx-orin", suite="detector", test="test_fps",
                     power_mode="MAXN", precision="fp16", batch=4)

# Writes rows `value = 0, 1, 2, ...` as worker `name`, optionally after a start signal file appears.
WRITER = textwrap.dedent("""
    import os, sys, time
    from harness.results import ResultsWriter, RowContext
    path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    while go and not os.path.exists(go):
        time.sleep(0.001)
    context = RowContext(run="r1", board=name, profile="nano", suite="s", test="t")
    with ResultsWriter(path) as writer:
        i = 0
        while count < 0 or i < count:
            writer.write(context.row("latency", i, "ms"))
            i += 1
""")


def spawn_writer(path: Path, name: str, count: int, go: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count), str(go or "")], cwd=ROOT)


def test_rows_round_trip_with_empty_fields(tmp_path: Path) -> None:
    path = tmp_path / "results" / "run.csv"
    rows = [CONTEXT.row("fps", 123.5, "fps"),
            replace(CONTEXT, backend="onnxruntime", device="cpu", quantizer="ort-static-qdq", phase="raw").row(
                "energy_per_frame", 0.04, "J/frame", "modeled", spread=0.021),
            Row(run="r1", board="nano-01", profile="nano", power_mode=None, precision=None, batch=None,
                suite="board", test="test_boot", metric="boot_time", value=41.0, unit="s", source="measured")]
    with ResultsWriter(path) as writer:
        writer.write_all(rows)
    assert read_results(path) == rows
    assert path.read_text().splitlines()[0] == ",".join(FIELDS)
    assert rows[0].time.endswith("+00:00")


def test_reopening_appends_without_a_second_header(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    for value in (1.0, 2.0):
        with ResultsWriter(path) as writer:
            writer.write(CONTEXT.row("fps", value, "fps"))
    assert [r.value for r in read_results(path)] == [1.0, 2.0]
    assert path.read_text().count("run,board,") == 1


def test_a_file_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text("run,metric,value\nr0,fps,1\n")
    with pytest.raises(HarnessError, match="header"):
        ResultsWriter(path)
    with pytest.raises(HarnessError, match="columns"):
        read_results(path)


def test_a_torn_last_line_is_skipped_and_set_aside_when_the_file_is_reopened(tmp_path: Path) -> None:
    """A rerun with the same --run-id must not glue its first row onto a half row a crash left."""
    path = tmp_path / "run.csv"
    with ResultsWriter(path) as writer:
        writer.write(CONTEXT.row("fps", 1.0, "fps"))
    with path.open("a") as f:
        f.write("r1,orin-01,agx-orin,MAXN,fp16,4,detec")
    assert [r.value for r in read_results(path)] == [1.0]  # a reader skips the torn line
    with pytest.warns(UserWarning, match=r"last line was cut off .* moved 37 bytes to .*run\.csv\.torn"), \
            ResultsWriter(path) as writer:
        writer.write(CONTEXT.row("fps", 2.0, "fps"))
    assert [r.value for r in read_results(path)] == [1.0, 2.0]
    assert all(len(line.split(",")) == len(FIELDS) for line in path.read_text().splitlines())
    assert (tmp_path / "run.csv.torn").read_text() == "r1,orin-01,agx-orin,MAXN,fp16,4,detec\n"


def test_the_header_is_there_before_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    ResultsWriter(path).close()  # a run killed before it measured anything
    assert path.read_text() == ",".join(FIELDS) + "\n"
    assert read_results(path) == []


# Writes rows until the file may grow no more (RLIMIT_FSIZE: the kernel's per-process file size limit, which
# fails writes past it like a full disk does), then reports what the writer raised.
FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from harness.results import ResultsWriteError, ResultsWriter, RowContext
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
    context = RowContext(run="r1", board="nx-01", profile="xavier-nx", suite="s", test="t")
    with ResultsWriter(sys.argv[1]) as writer:
        try:
            for i in range(1000):
                writer.write(context.row("latency", i, "ms"))
        except ResultsWriteError as exc:
            print(exc)
""")


def test_a_full_disk_stops_with_the_file_named_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    # the row that crossed the limit was written in part (a short write), which the writer took back
    assert done.stdout.startswith(f"cannot write to the results file {path}: short write"), done.stdout + done.stderr
    text = path.read_text()
    assert text.endswith("\n") and len(text.encode()) <= 3000  # the half row that did not fit was taken back
    values = [r.value for r in read_results(path)]
    assert values == [float(i) for i in range(len(values))] and len(values) > 5


def test_benchmark_json_is_replaced_whole_and_shared_by_the_boards_of_a_run(tmp_path: Path) -> None:
    target = tmp_path / "benchmark.json"
    nx, nano = BenchmarkFile(target, "nx-01", "xavier-nx"), BenchmarkFile(target, "nano-01", "nano")
    nx.add(benchmark_entry("a", [0.010, 0.011]))
    nano.add(benchmark_entry("a", [0.030, 0.031]))
    nx.add(benchmark_entry("b", [0.020, 0.021]))
    document = json.loads(target.read_text())
    assert [(b["name"], b["extra_info"]["board"]) for b in document["benchmarks"]] == [
        ("a", "nx-01"), ("a", "nano-01"), ("b", "nx-01")]
    assert document["machine_info"]["boards"] == {"nano-01": "nano", "nx-01": "xavier-nx"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmark.json", "benchmark.json.lock"]  # no temporary


def test_rows_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    proc = spawn_writer(path, "w0", count=-1)
    try:
        deadline = time.monotonic() + 30
        while not (path.exists() and path.read_text().count("\n") > 50):
            assert time.monotonic() < deadline and proc.poll() is None, "writer produced no rows"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    values = [r.value for r in read_results(path)]
    assert len(values) >= 50
    assert values == [float(i) for i in range(len(values))]
    with ResultsWriter(path) as writer:  # the killed writer left the lock and the file usable
        writer.write(CONTEXT.row("fps", -1.0, "fps"))
    assert read_results(path)[-1].value == -1.0


def test_two_processes_append_to_one_file(tmp_path: Path) -> None:
    path, go, count = tmp_path / "run.csv", tmp_path / "go", 300
    procs = [spawn_writer(path, name, count, go) for name in ("gw0", "gw1")]
    time.sleep(0.5)  # both are importing and waiting on `go`
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    rows = read_results(path)
    assert path.read_text().count("run,board,") == 1
    for name in ("gw0", "gw1"):
        assert [r.value for r in rows if r.board == name] == [float(i) for i in range(count)]
    assert len(rows) == 2 * count


def test_modeled_file_as_the_board_image_writes_it(tmp_path: Path) -> None:
    context = BoardContext.for_profile(get_profile("orin-nano"), base="jetson-hil/base:test", wheels=tmp_path)
    modeled = modeled_metrics(context.files["etc/jetson-hil/modeled"].decode())
    assert modeled == {"power", "temperature", "gpu", "clocks", "memory"}
    for metric in ("power_mean", "power_max", "energy", "energy_per_frame", "fps_per_w", "temperature_peak",
                   "throttled", "gpu_util", "ram_used"):
        assert source_of(metric, modeled) == "modeled", metric
    # and it says what of the model is assumed: every assumption of the profile, one comment line each
    text = context.files["etc/jetson-hil/modeled"].decode()
    for name in get_profile("orin-nano").virtual.model.assumptions:
        assert f"# assumption: {name}: " in text
    for metric in ("fps", "latency_p99", "telemetry_samples", "boot_time", "powerup_time"):
        assert source_of(metric, modeled) == "measured", metric


def test_modeled_parsing_ignores_comments_blanks_and_case() -> None:
    assert modeled_metrics("# what this board models\n\n Power \ntemperature  # no sensors\n") == {
        "power", "temperature"}
    assert modeled_metrics("") == frozenset()
    assert source_of("power_mean", frozenset()) == "measured"
    assert source_of("fan_rpm", modeled_metrics("fan\n")) == "modeled"  # an unknown category matches by name


def test_a_board_without_the_file_measures_everything() -> None:
    transport = LocalTransport()
    assert read_modeled(transport) == frozenset()
    assert read_modeled(Board("here", get_profile("nano"), transport)) == frozenset()


def test_window_summary_rows_carry_their_source() -> None:
    (line,) = parse_file(ROOT / "tests" / "data" / "jetson" / "tegrastats" / "agx-orin-jp5-root.txt")
    summary = summarize([TimedSample(line, 0.0, "board"), TimedSample(line, 1.0, "board")], frames=30,
                        duration_s=1.0, profile=get_profile("agx-orin"), mode="MAXN")
    rows = observations(CONTEXT, summary.to_rows(), modeled_metrics("power\n"))
    sources = {row.metric: row.source for row in rows}
    assert sources["energy"] == sources["fps_per_w"] == "modeled"
    assert sources["temperature_peak"] == sources["throttled"] == "measured"
    assert all(row.board == "orin-01" and row.batch == 4 for row in rows)


def test_latency_stats_match_pytest_benchmark() -> None:
    stats_module = pytest.importorskip("pytest_benchmark.stats")
    rng = random.Random(7)
    for n in (1, 2, 3, 4, 5, 6, 7, 10, 33):
        data = [rng.uniform(0.01, 0.05) for _ in range(n)]
        reference = stats_module.Stats()
        for value in data:
            reference.update(value)
        ours = latency_stats(data)
        for key, value in reference.as_dict().items():
            assert ours[key] == (pytest.approx(value) if isinstance(value, float) else value), (n, key)


def test_benchmark_json_is_accepted_by_pytest_benchmark_compare(tmp_path: Path) -> None:
    rng = random.Random(3)
    files = []
    for run, scale in (("0001_baseline", 1.0), ("0002_candidate", 1.1)):
        entries = [benchmark_entry(f"yolov8n-{precision}", [scale * rng.uniform(0.020, 0.024) for _ in range(50)],
                                   group="agx-orin", fullname=f"suites/detector.py::test_fps[{precision}]",
                                   params={"precision": precision},
                                   extra_info={"fps": 45.0 / scale, "power_mean_w": 21.5, "source": "measured"})
                   for precision in ("fp16", "int8")]
        files.append(write_benchmark_json(tmp_path / f"{run}.json", entries, machine_info={"board": "orin-01"}))
    document = json.loads(files[0].read_text())
    assert document["benchmarks"][0]["extra_info"]["fps"] == 45.0
    assert document["machine_info"]["board"] == "orin-01"
    cli = Path(sys.executable).parent / "pytest-benchmark"
    if not cli.exists():
        pytest.skip("pytest-benchmark is not installed")
    done = subprocess.run([str(cli), "compare", *map(str, files)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Failed to load" not in output
    assert "benchmark 'agx-orin': 4 tests" in output
    table = [line for line in output.splitlines() if line.startswith("yolov8n-")]
    for name in ("yolov8n-fp16", "yolov8n-int8"):  # compare shortens the file names in its table
        assert {run for run in ("0001_", "0002_") for line in table if line.startswith(name) and run in line} == {
            "0001_", "0002_"}

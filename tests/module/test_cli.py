"""``python -m module`` as a real process: bench JSON, a user's model, clear errors, degraded uplink, control API.

Everything runs as a subprocess from the repo root, the way the harness starts the module on a board, so
argument parsing, exit codes, stderr and signal handling are what is tested, not the functions behind them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from module.model import DEFAULT_MODEL
from tests.module.onnx_models import COCO80, flat_output, yolov8_like
from tests.sshd import free_port

ROOT = Path(__file__).resolve().parents[2]
ORDER = ("capture", "pre", "infer_start", "infer_end", "post", "emit")
#: a bad-input run must fail this fast: it should never get as far as starting the pipeline
ERROR_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120


def module_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "module", *map(str, args)]


def run_module(
    *args: str | Path, timeout: float = RUN_TIMEOUT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run to completion; a hang fails the test through TimeoutExpired instead of hanging the suite."""
    return subprocess.run(module_cmd(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Api:
    """A tiny JSON client for the control API on 127.0.0.1."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> dict:
        status, payload = self.call("GET", path)
        assert status == 200, (path, payload)
        return payload

    def try_get(self, path: str) -> dict | None:
        """None while the server is not up yet (connection refused)."""
        try:
            return self.get(path)
        except (urllib.error.URLError, ConnectionError):
            return None


class Module:
    """A long-running ``python -m module run`` with its control API on a known port."""

    def __init__(self, tmp_path: Path, *args: str | Path):
        self.port = free_port()
        self.api = Api(self.port)
        self.stderr_path = tmp_path / "module.stderr"
        self._stderr = self.stderr_path.open("w")
        cmd = module_cmd("run", "--api-port", self.port, "--state-dir", tmp_path / "state", *args)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._stderr, text=True)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_up(self, timeout: float = 60) -> dict:
        def up() -> dict | None:
            if self.proc.poll() is not None:
                pytest.fail(f"module exited early with {self.proc.returncode}:\n{self.stderr()}")
            return self.api.try_get("/health")

        return wait_for(up, timeout, "the control API to answer /health")

    def terminate(self, bound_s: float) -> tuple[int, float]:
        """SIGTERM, then the exit code and how long the exit took (killed and failed past ``bound_s``)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"module did not exit within {bound_s} s of SIGTERM:\n{self.stderr()}")
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


@pytest.fixture
def module_run(tmp_path: Path) -> Iterator[Callable[..., Module]]:
    """Start modules; whatever a test leaves running is killed afterwards."""
    started: list[Module] = []

    def start(*args: str | Path) -> Module:
        started.append(Module(tmp_path, *args))
        return started[-1]

    yield start
    for module in started:
        module.close()


@pytest.fixture(scope="module")
def user_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own 80-class YOLOv8-layout export, class names only in its ONNX metadata (no labels file)."""
    return yolov8_like(tmp_path_factory.mktemp("user") / "user80.onnx", names=COCO80)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, exactly one non-empty stderr line starting 'error:' that names the problem, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


# bench ----------------------------------------------------------------------------------------------------------------
BENCH_FAST = ("--frames", "40", "--warmup", "3", "--threads", "1")


def test_bench_prints_a_json_result_for_the_shipped_model() -> None:
    result = run_module("bench", *BENCH_FAST)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model_sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert (doc["backend"], doc["precision"], doc["batch"]) == ("onnxruntime", "fp32", 1)
    assert doc["raw_fps"] > 0 and doc["pipeline_fps"] > 0
    latency = doc["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert doc["raw_iterations"] == 40 == len(doc["raw_latencies_ms"])
    assert (doc["layout"], doc["classes"], doc["input_hw"]) == ("yolov8", 6, [320, 320])


def test_bench_json_option_writes_the_file_not_stdout(tmp_path: Path) -> None:
    out = tmp_path / "results" / "bench.json"
    result = run_module("bench", *BENCH_FAST, "--batch", "4", "--json", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    doc = json.loads(out.read_text())
    assert doc["batch"] == 4
    assert doc["raw_iterations"] == 10  # 40 frames in batches of 4
    assert doc["raw_fps"] > 0 and doc["pipeline_fps"] > 0


def test_bench_rounds_alternate_and_report_medians() -> None:
    result = run_module("bench", *BENCH_FAST, "--rounds", "3")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    rounds = doc["rounds"]
    assert len(rounds) == 3
    assert doc["raw_fps"] == sorted(r["raw_fps"] for r in rounds)[1]
    assert doc["pipeline_fps"] == sorted(r["pipeline_fps"] for r in rounds)[1]
    assert doc["pipeline_vs_raw"] == sorted(r["ratio"] for r in rounds)[1]
    assert 0 < doc["pipeline_engine_busy"] <= 1
    assert doc["raw_iterations"] == 3 * 40 == len(doc["raw_latencies_ms"])
    assert doc["frames"] == 3 * 40
    # each round's raw and pipeline phase on the board's clock, in turn, warm-ups outside them
    phases = doc["phases"]
    assert [(p["phase"], p["round"]) for p in phases] == [(k, r) for r in range(3) for k in ("raw", "pipeline")]
    assert all(p["frames"] == 40 for p in phases if p["phase"] == "raw")
    assert all(p["frames"] == 39 for p in phases if p["phase"] == "pipeline")  # frames between first and last emit
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(phases)), phases
    assert doc["started"] < phases[0]["start"] and phases[-1]["end"] < doc["started"] + doc["wall_s"] + 0.01  # 2 dp
    assert all(p["longest_gap_s"] >= p["typical_gap_s"] > 0 for p in phases)  # how steadily the frames came
    for p in phases:  # each phase's frames over its own span give the figure the round reports for it
        fps = rounds[p["round"]][f"{p['phase']}_fps"]
        assert p["frames"] / (p["end"] - p["start"]) == pytest.approx(fps, rel=0.02)


# a user's own model ---------------------------------------------------------------------------------------------------
def test_user_80_class_model_runs_through_bench(user_model: Path) -> None:
    result = run_module("bench", "--model", user_model, "--frames", "4", "--warmup", "1", "--threads", "1")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["layout"], doc["classes"], doc["input_hw"]) == ("yolov8", 80, [640, 640])
    assert doc["model_sha256"] == hashlib.sha256(user_model.read_bytes()).hexdigest()


def test_user_80_class_model_runs_through_the_pipeline_with_metadata_labels(user_model: Path, tmp_path: Path) -> None:
    """A near-zero threshold makes the random weights produce detections, so their labels can be checked."""
    sink = tmp_path / "out.jsonl"
    result = run_module(
        "run", "--model", user_model, "--source", "synthetic:5", "--sink", f"jsonl:{sink}", "--exit-when-done",
        "--api-port", "0", "--state-dir", tmp_path / "state", "--conf", "0.001", "--run-id", "user80",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    messages = read_jsonl(sink)
    assert [m["frame_id"] for m in messages] == list(range(5))
    assert {m["model_sha256"] for m in messages} == {hashlib.sha256(user_model.read_bytes()).hexdigest()}
    detections = [d for m in messages for d in m["detections"]]
    assert detections, "expected the random model to give candidates at conf 0.001"
    for det in detections:
        assert 0 <= det["class_id"] < 80
        assert det["label"] == COCO80[det["class_id"]]  # from the ONNX 'names' metadata, not 'classN'


# bad input ------------------------------------------------------------------------------------------------------------
def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    line = assert_one_clear_error(run_module("bench", "--model", missing, timeout=ERROR_TIMEOUT_S), str(missing))
    assert "not found" in line


def test_model_with_an_unknown_output_layout(tmp_path: Path) -> None:
    model = flat_output(tmp_path / "flat.onnx")
    args = ("run", "--model", model, "--source", "synthetic:2", "--api-port", "0", "--state-dir", tmp_path / "s")
    assert_one_clear_error(run_module(*args, timeout=ERROR_TIMEOUT_S), "unknown output layout")


def test_unreadable_video(tmp_path: Path) -> None:
    video = tmp_path / "broken.mp4"
    video.write_bytes(os.urandom(4096))
    args = ("run", "--source", f"video:{video}", "--api-port", "0", "--state-dir", tmp_path / "s")
    assert_one_clear_error(run_module(*args, timeout=ERROR_TIMEOUT_S), str(video))


def test_missing_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "no-such-folder"
    args = ("run", "--source", f"images:{folder}", "--api-port", "0", "--state-dir", tmp_path / "s")
    assert_one_clear_error(run_module(*args, timeout=ERROR_TIMEOUT_S), str(folder), "does not exist")


def test_unknown_sink_scheme(tmp_path: Path) -> None:
    args = ("run", "--sink", "kafka://broker/t", "--source", "synthetic:2", "--api-port", "0", "--state-dir", tmp_path)
    assert_one_clear_error(run_module(*args, timeout=ERROR_TIMEOUT_S), "kafka://broker/t", "supported")


def test_iotedge_sink_outside_iot_edge_is_a_clear_error(tmp_path: Path) -> None:
    """Without azure-iot-device it says to install it; with it, that no IoT Edge environment is set."""
    args = ("run", "--sink", "iotedge:output1", "--source", "synthetic:2", "--api-port", "0", "--state-dir", tmp_path)
    line = assert_one_clear_error(run_module(*args, timeout=ERROR_TIMEOUT_S), "uplink iotedge:")
    assert "azure-iot-device" in line or "IOTEDGE_DEVICEID" in line


def test_unknown_backend() -> None:
    line = assert_one_clear_error(run_module("bench", "--backend", "openvino", timeout=ERROR_TIMEOUT_S), "openvino")
    assert "onnxruntime" in line  # says what would work


@pytest.mark.parametrize(("precision", "quantizer", "logged"), [("fp16", "ort-float16", "converting"),
                                                                ("int8", "ort-static-qdq", "calibrating int8")])
def test_reduced_precisions_on_onnxruntime_are_converted_once(tmp_path: Path, precision: str, quantizer: str,
                                                               logged: str) -> None:
    env = {**os.environ, "JETSON_HIL_ENGINE_CACHE": str(tmp_path)}
    args = ("bench", "--backend", "onnxruntime", "--precision", precision, "--frames", "8", "--warmup", "1")
    first = run_module(*args, env=env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert (doc["backend"], doc["precision"], doc["quantizer"]) == ("onnxruntime", precision, quantizer)
    assert logged in first.stderr
    (converted,) = tmp_path.glob(f"*-{precision}*.onnx")
    made = converted.stat().st_mtime_ns
    again = run_module(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "converting" not in again.stderr and converted.stat().st_mtime_ns == made  # read from the cache


@pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True).returncode == 0,
    reason="TensorRT is installed here",
)
def test_tensorrt_where_it_is_not_installed() -> None:
    assert_one_clear_error(run_module("bench", "--backend", "tensorrt", timeout=ERROR_TIMEOUT_S), "not available")


# degraded uplink ------------------------------------------------------------------------------------------------------
def test_unreachable_broker_at_start_queues_to_the_outbox(module_run: Callable[..., Module]) -> None:
    """No broker: frames still flow into the outbox, health stays clean, and SIGTERM still ends it promptly."""
    module = module_run("--sink", f"mqtt://127.0.0.1:{free_port()}/t", "--source", "synthetic:20", "--fps-cap", "20")
    health = module.wait_up()  # 20 frames at 20 fps: still running when the API first answers
    assert (health["status"], health["error"]) == ("running", None)  # healthy although the uplink is down
    depths: list[int] = []

    def queued() -> dict | None:
        stats = module.api.get("/stats")
        depths.append(stats["uplink"]["depth"])
        return stats if stats["frames"] == 20 and depths[-1] == 20 else None

    stats = wait_for(queued, 60, "all 20 frames to reach the outbox")
    assert depths == sorted(depths)  # the outbox only grows while the broker is away
    uplink = stats["uplink"]
    assert uplink["connected"] is False
    assert uplink["sent"] == 0 and uplink["acked"] == 0 and uplink["dropped"] == 0
    assert "unreachable" in (uplink["last_error"] or "") or "refused" in (uplink["last_error"] or "")
    health = module.api.get("/health")
    assert health["error"] is None and health["status"] != "error"
    assert module.proc.poll() is None  # a finished source does not end the process without --exit-when-done

    code, _ = module.terminate(bound_s=15)  # fails past the bound; paho's disconnect waits ~5 s at most
    assert code == 0, module.stderr()
    assert "Traceback" not in module.stderr()


# control API ----------------------------------------------------------------------------------------------------------
def test_control_api(module_run: Callable[..., Module], tmp_path: Path) -> None:
    sink = tmp_path / "api.jsonl"
    module = module_run("--source", "synthetic", "--fps-cap", "20", "--sink", f"jsonl:{sink}", "--run-id", "api-run")
    health = module.wait_up()
    sha = hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert (health["status"], health["run_id"], health["model_sha256"]) == ("running", "api-run", sha)

    info = module.api.get("/info")
    assert (info["model_sha256"], info["backend"], info["precision"]) == (sha, "onnxruntime", "fp32")
    assert info["precisions"] == ["fp32", "fp16", "int8"]
    assert (info["quantizer"], info["quantizers"]["int8"]) == (None, "ort-static-qdq")
    assert info["labels"] == ["circle", "square", "triangle", "cross", "ring", "diamond"]

    stats = wait_for(lambda: (s := module.api.get("/stats"))["frames"] >= 3 and s, 60, "frames through the pipeline")
    assert stats["fps"] > 0
    for stage in ("preprocess", "queue", "infer", "postprocess", "end_to_end"):
        assert {"p50", "p90", "p95", "p99"} <= stats["latency_ms"][stage].keys(), stage
    assert stats["latency_ms"]["end_to_end"]["p50"] >= stats["latency_ms"]["infer"]["p50"]

    # config: a valid change is applied, an invalid one is refused with a reason and changes nothing
    assert module.api.get("/config")["conf_threshold"] == pytest.approx(0.25)
    status, body = module.api.call("PUT", "/config", {"conf_threshold": 0.5, "fps_cap": 25})
    assert status == 200 and body["conf_threshold"] == pytest.approx(0.5), body
    config = module.api.get("/config")
    assert (config["conf_threshold"], config["fps_cap"]) == (pytest.approx(0.5), pytest.approx(25))
    status, body = module.api.call("PUT", "/config", {"nope": 1})
    assert status == 400 and "unknown config field 'nope'" in body["error"], body
    status, body = module.api.call("PUT", "/config", {"iou_threshold": 1.5})
    assert status == 400 and "iou_threshold" in body["error"], body
    assert module.api.get("/config") == config

    # stop and start again in the same process, with the engine loaded once
    assert module.api.call("POST", "/stop") == (200, {"status": "stopped"})
    assert module.api.get("/health")["status"] == "stopped"
    assert module.api.call("POST", "/start") == (200, {"status": "running"})
    assert module.api.get("/health")["status"] == "running"
    wait_for(lambda: module.api.get("/stats")["frames"] >= 2, 60, "frames after a restart")  # a fresh pipeline
    assert module.api.get("/info")["pid"] == module.proc.pid

    status, body = module.api.call("GET", "/nope")
    assert status == 404 and "error" in body
    status, _ = module.api.call("POST", "/health")  # known path, wrong method
    assert status == 404

    code, _ = module.terminate(bound_s=30)
    assert code == 0, module.stderr()


# messages -------------------------------------------------------------------------------------------------------------
def test_jsonl_messages_follow_the_schema(tmp_path: Path) -> None:
    sink = tmp_path / "detections.jsonl"
    frames = 8
    result = run_module(
        "run", "--source", f"synthetic:{frames}", "--sink", f"jsonl:{sink}", "--exit-when-done", "--api-port", "0",
        "--state-dir", tmp_path / "state", "--run-id", "run-42",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    messages = read_jsonl(sink)
    assert len(messages) == frames
    assert [m["seq"] for m in messages] == list(range(1, frames + 1))
    assert [m["frame_id"] for m in messages] == list(range(frames))
    sha = hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    labels = ("circle", "square", "triangle", "cross", "ring", "diamond")
    for message in messages:
        assert message["schema"] == "jetson-hil.detections/1"
        assert message["run_id"] == "run-42"
        assert message["model_sha256"] == sha
        stamps = [message["ts"][key] for key in ORDER]
        assert stamps == sorted(stamps), message["ts"]
        width, height = message["image"]["width"], message["image"]["height"]
        for det in message["detections"]:
            assert det["label"] == labels[det["class_id"]]
            assert 0.25 < det["score"] <= 1.0
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, det
    # the synthetic video has objects in every frame and the reference model finds most of them
    assert sum(len(m["detections"]) for m in messages) >= frames


@pytest.mark.parametrize(("args", "says"), [
    (("bench", "--duration", "-1"), "argument --duration: must be more than 0, got -1"),
    (("bench", "--rounds", "0"), "argument --rounds: must be more than 0, got 0"),
    (("bench", "--frames", "2", "--warmup", "0", "--labels", "/nonexistent/labels.txt"),
     "cannot read labels file /nonexistent/labels.txt"),
    (("bench", "--frames", "2", "--warmup", "0", "--json", "/proc/nonexistent/out.json"),
     "cannot write --json /proc/nonexistent/out.json"),
    (("run", "--api-port", "70000"), "argument --api-port: must be a TCP port 0..65535"),
    (("run", "--source", "synthetic:2", "--state-dir", "/proc/nonexistent/state"),
     "cannot keep the outbox in --state-dir /proc/nonexistent/state"),
])
def test_bad_arguments_are_one_line(args: tuple[str, ...], says: str) -> None:
    assert_one_clear_error(run_module(*args, timeout=ERROR_TIMEOUT_S), says)


def test_a_control_api_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_module("run", "--source", "synthetic:2", "--state-dir", tmp_path, "--api-port", str(port),
                            timeout=ERROR_TIMEOUT_S)
    assert_one_clear_error(result, f"cannot serve the control API on 127.0.0.1:{port}: Address already in use",
                           "--api-port 0")

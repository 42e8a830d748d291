"""The suites end to end on a virtual Orin Nano, and the suites failing for the reasons they name.

`pytest suites --device=virtual:orin-nano` runs in a child pytest, as a lab would run it: once with
the module as it is (every precision, no skips, every figure per phase), then against candidate
builds with a defect each (tests/module_copies.py): a letterbox one pixel off, a model retrained
worse, an engine half as fast, and a power mode switched under a measurement. Each must fail the
verdict that names it. The board is started once for this file and reused by every child run.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.board.state import STATE_DIR
from harness.gates import compare, load_policy
from harness.golden import FixtureSet
from harness.profiles import get_profile
from harness.results import VERDICT, read_results
from tests.module_copies import BROKEN_LETTERBOX, SLOWER_ENGINE, module_copy, worse_model
from tests.suite_runs import CHILD_TIMEOUT_S, PROFILE, REPO, outcomes, rows, suites

pytestmark = pytest.mark.virtual


def test_suites_deploy_measure_and_record_every_observation(board_name: str, tmp_path: Path) -> None:
    # the resilience suite has its own end-to-end file (tests/test_resilience_e2e.py)
    done, junit = suites(tmp_path, "e2e", "--ignore", "suites/test_resilience.py", "--duration", "3", "--rounds", "3",
                         "--power-mode", "default",
                         "--batch", "1,4")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"results.csv: {tmp_path / 'e2e' / 'results.csv'}" in done.stdout
    results = outcomes(junit)
    assert "skipped" not in results.values(), results  # FP32, FP16 and INT8 all run on a CPU board
    for precision in ("fp32", "fp16", "int8"):
        assert results[f"test_detections_match_golden[{precision}]"] == "passed"
        for batch in (1, 4):
            assert any(name.endswith(f"-b{batch}-{precision}]") and name.startswith("test_throughput")
                       for name in results), (precision, batch)

    table = rows(tmp_path, "e2e")
    quantizers = {r["precision"]: r["quantizer"] for r in table if r["suite"] == "test_correctness"
                  and r["metric"] != VERDICT}  # a test's verdict row is matched by its test, not its precision
    verdicts = {r["test"]: r["value"] for r in table if r["metric"] == VERDICT}  # beside each test's figures
    assert {t for t in results if t.startswith(("test_throughput", "test_detections", "test_map"))} <= set(verdicts)
    assert all(results[test] == ("passed" if value == "1.0" else "failed") for test, value in verdicts.items())
    assert quantizers == {"fp32": "", "fp16": "ort-float16", "int8": "ort-static-qdq"}
    assert all((r["backend"], r["device"]) == ("onnxruntime", "cpu") for r in table if r["metric"] != "")
    throughput = [r for r in table if r["suite"] == "test_throughput"]
    per_phase = {(r["precision"], r["batch"], r["phase"], r["metric"]): r for r in throughput}
    for precision in ("fp32", "fp16", "int8"):
        for phase in ("raw", "pipeline"):
            for metric in ("power_mean", "energy", "energy_per_frame", "fps_per_w"):
                row = per_phase[precision, "1", phase, metric]
                assert row["source"] == "modeled" and float(row["value"]) > 0, row
        assert per_phase[precision, "1", "raw", "raw_fps"]["source"] == "measured"
        assert per_phase[precision, "1", "raw", "raw_fps"]["spread"] != ""  # median of 3 rounds, with its spread
    # no trtexec on a virtual board: each throughput configuration has one row that says so
    assert {(r["precision"], r["batch"]) for r in throughput if r["metric"] == "trtexec_available"
            and r["phase"] == "trtexec" and r["value"] == "0.0"} == {(p, b) for p in ("fp32", "fp16", "int8")
                                                                    for b in ("1", "4")}
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert {"board", "l4t", "jetpack", "model_sha256", "harness_version", "onnxruntime"} <= set(properties)
    # Orin Nano's JetPack 6.2 is Ubuntu 22.04 on aarch64; this board is Debian bookworm on the host's CPU, and says so
    differs = properties["differs_from_jetpack"]
    assert "python: 3.11 (JetPack 6.2: 3.10)" in differs and "glibc: 2.36 (JetPack 6.2: 2.35)" in differs
    assert ("architecture: x86_64 (JetPack 6.2: aarch64)" in differs) == (platform.machine() == "x86_64")
    # the board's stack and the backend, in one line before the first test, and in the JUnit file
    stack_line = properties["board_stack"]
    assert stack_line.startswith(f"JetPack {properties['jetpack']} · Python 3.")
    assert stack_line.endswith("· no TensorRT · no CUDA runtime → onnxruntime (asked for)")
    assert f": {stack_line}" in done.stdout
    assert (tmp_path / "e2e" / "benchmark.json").is_file()
    # the session's end: the run in the history, its report written from it, paths printed
    report = json.loads((tmp_path / "e2e" / "report.json").read_text())
    device = report["devices"][0]
    assert device["verdicts"] == results and len(device["throughput"]) == 6  # 1 mode x 2 batches x 3 precisions
    assert set(device["modeled_columns"]) == {"power W", "J/frame", "FPS/W"}
    assert report["trends"] and f"report.html: {tmp_path / 'e2e' / 'report.html'}" in done.stdout
    assert (tmp_path / "history.sqlite").is_file()


def test_a_letterbox_one_pixel_off_fails_correctness(board_name: str, tmp_path: Path) -> None:
    broken = module_copy(tmp_path, BROKEN_LETTERBOX)
    done, junit = suites(tmp_path, "letterbox", "--module", broken, "--precision", "fp32",
                         tests="suites/test_correctness.py")
    assert done.returncode == 1, done.stdout[-3000:]
    assert outcomes(junit)["test_detections_match_golden[fp32]"] == "failed"
    assert "golden detections not reproduced" in done.stdout and "best IoU" in done.stdout


def test_deploy_docker_reaches_the_docker_deployer(board_name: str, tmp_path: Path) -> None:
    """`--deploy docker` deploys through the board's Docker engine: a virtual board has none, so the session's
    tests fail with the deployer's one line instead of deploying natively behind the user's back."""
    done, junit = suites(tmp_path, "docker", "--deploy", "docker", "-k", "health_endpoint",
                         tests="suites/test_correctness.py")
    assert done.returncode == 1, done.stdout[-3000:]
    assert outcomes(junit) == {"test_health_endpoint_reports_a_running_pipeline": "error"}
    assert f"deploying the module to {board_name} (docker) failed: cannot reach the Docker engine at ssh://" \
        in done.stdout, done.stdout[-3000:]
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert properties["deploy_method"] == "docker"


def test_a_model_retrained_worse_fails_the_model_card_floor(board_name: str, tmp_path: Path) -> None:
    worse = worse_model(tmp_path / "worse.onnx")
    fixtures = Path(shutil.copytree(FixtureSet().root, tmp_path / "fixtures"))
    regenerated = subprocess.run([sys.executable, "-m", "harness", "golden", "--fixtures", str(fixtures),
                                  "--keep-images", "--model", str(worse)], cwd=REPO, capture_output=True, text=True,
                                 timeout=300, check=False)
    assert regenerated.returncode == 0, regenerated.stderr
    candidate = module_copy(tmp_path, model=worse)
    done, junit = suites(tmp_path, "worse", "--module", candidate, "--fixtures-dir", fixtures, "--precision", "fp32",
                         tests="suites/test_correctness.py")
    results = outcomes(junit)
    assert results["test_detections_match_golden[fp32]"] == "passed"  # its own golden: the module runs it right
    assert results["test_map_above_the_model_card_floor[fp32]"] == "failed"  # but the model is worse than its card
    assert results["test_model_is_the_one_its_card_describes"] == "failed"
    assert "below the model card's floor 0.95" in done.stdout


def test_a_slower_module_fails_the_baseline_gate(board_name: str, tmp_path: Path) -> None:
    options = ("--power-mode", "default", "--batch", "1", "--precision", "fp32", "--duration", "7", "--rounds", "7")
    baseline, _ = suites(tmp_path, "baseline", *options, tests="suites/test_throughput.py")
    assert baseline.returncode == 0, baseline.stdout[-3000:]
    slower = module_copy(tmp_path, SLOWER_ENGINE)
    done, junit = suites(tmp_path, "slower", *options, "--module", slower, "--baseline", "latest",
                         tests="suites/test_throughput.py")
    compared = compare(read_results(tmp_path / "baseline" / "results.csv"),
                       read_results(tmp_path / "slower" / "results.csv"),
                       load_policy(REPO / "suites" / "regression.yaml"))
    assert done.returncode == 1, "\n".join(c.describe() for c in compared) or done.stdout[-3000:]
    assert list(outcomes(junit).values()) == ["failed"]
    regressions = [line for line in done.stdout.splitlines()
                   if "regression: " in line and "baseline run baseline)" in line]
    assert regressions, done.stdout[-3000:]
    # the slower engine shows in the engine's own figures (which of them passes its noise band varies with the VM)
    assert any(f"{metric}: baseline" in line for line in regressions
               for metric in ("raw_fps [raw]", "latency_p50 [raw]", "latency_p99 [raw]")), regressions


def test_a_power_mode_switched_under_a_measurement_fails_it(board_name: str, tmp_path: Path) -> None:
    from harness.virtual.engine import docker_client

    profile = get_profile(PROFILE)
    other = next(m for m in profile.power_modes if m.id != profile.default_power_mode)
    container = docker_client().containers.get(board_name)
    switched: list[str] = []

    def switch_when_the_bench_runs() -> None:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while time.monotonic() < deadline:
            if container.exec_run(["pgrep", "-f", "module bench"]).exit_code == 0:
                switched.append(container.exec_run(["nvpmodel", "-m", str(other.id)]).output.decode())
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=switch_when_the_bench_runs, daemon=True)
    watcher.start()
    done, junit = suites(tmp_path, "switched", "--power-mode", "default", "--batch", "1", "--precision", "fp32",
                         "--duration", "8", "--rounds", "1", tests="suites/test_throughput.py")
    watcher.join(10)
    assert switched, "the bench never started on the board"
    assert list(outcomes(junit).values()) == ["failed"], done.stdout[-3000:]
    assert f"the power mode changed under the measurement ({profile.default_mode.name} → {other.name})" in done.stdout
    # no figure recorded: only the test's verdict, failed
    assert [(r["metric"], r["value"]) for r in rows(tmp_path, "switched") if r["suite"] == "test_throughput"] == \
        [(VERDICT, "0.0")]


def board_runs(container, pattern: str) -> bool:
    return container.exec_run(["pgrep", "-f", pattern]).exit_code == 0


def when_the_bench_runs(container, fault: Callable[[], None]) -> threading.Thread:
    """Apply `fault` to the board once a bench has been running for a few seconds (inside its raw phase)."""
    def watch() -> None:
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while time.monotonic() < deadline and not board_runs(container, "module bench"):
            time.sleep(0.2)
        time.sleep(4)  # where the fault lands: engine ready, raw phase under way (not a synchronisation)
        fault()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_stalled_board_gives_no_figure_until_a_clean_measurement(board_name: str, tmp_path: Path) -> None:
    """The board freezes for 5 s mid-bench (docker pause: every process, sshd and tegrastats too): that
    measurement is invalid and taken again; the recorded figure is the clean one."""
    from harness.virtual.engine import docker_client

    container = docker_client().containers.get(board_name)

    def freeze() -> None:
        container.pause()
        time.sleep(5)  # the stall's length
        container.unpause()

    stall = when_the_bench_runs(container, freeze)
    done, junit = suites(tmp_path, "stalled", "--power-mode", "default", "--batch", "1", "--precision", "fp32",
                         "--duration", "8", "--rounds", "1", tests="suites/test_throughput.py")
    stall.join(30)
    assert list(outcomes(junit).values()) == ["passed"], done.stdout[-3000:]
    assert "invalid measurement, measuring again: attempt 1: raw round 1: no frame for" in done.stdout
    table = {r["metric"]: float(r["value"]) for r in rows(tmp_path, "stalled")}
    assert table["measurement_attempts"] == 2


def test_a_killed_run_leaves_whole_results_and_a_board_that_puts_itself_back(board_name: str,
                                                                            tmp_path: Path) -> None:
    from harness.virtual.engine import docker_client

    container = docker_client().containers.get(board_name)
    profile = get_profile(PROFILE)
    report = tmp_path / "killed"
    command = [sys.executable, "-m", "pytest", "suites/test_throughput.py", f"--device=virtual:{PROFILE}",
               "--report-dir", str(tmp_path), "--run-id", "killed", f"--junitxml={report / 'junit.xml'}",
               "--power-mode", "max", "--batch", "1,4", "--precision", "fp32", "--duration", "30", "--rounds", "1",
               "--watchdog-timeout", "8", "-p", "no:cacheprovider", "-q"]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT_S  # the first test done, the second one's bench running
        while not ((report / "benchmark.json").is_file() and board_runs(container, "module bench --duration 30 "
                                                                                     "--rounds 1 --batch 4")):
            assert time.monotonic() < deadline and child.poll() is None, "the run never got to its second test"
            time.sleep(0.5)
    finally:
        child.kill()  # SIGKILL: no teardown, no restore
        child.wait(30)
    killed_at = time.monotonic()
    assert len(read_results(report / "results.csv")) > 10  # every row whole
    assert [b["name"] for b in json.loads((report / "benchmark.json").read_text())["benchmarks"]] == [
        f"throughput[{profile.max_mode.name}-b1-fp32]"]
    cases = [case.get("name") for case in ET.parse(report / "junit.xml").iter("testcase")]
    assert cases == [f"test_throughput[{profile.max_mode.name}-b1-fp32]"]

    def put_back() -> bool:
        mode = container.exec_run(["nvpmodel", "-q"]).output.decode()
        journal = container.exec_run(["test", "-e", f"{STATE_DIR}/journal.json"]).exit_code == 0
        return profile.default_mode.name in mode and not journal

    while not put_back():
        assert time.monotonic() - killed_at < 30, "the board did not put itself back"
        time.sleep(0.5)
    took = time.monotonic() - killed_at
    assert took < 8 + 10, took
    last = json.loads(container.exec_run(["cat", f"{STATE_DIR}/last-restore.json"]).output)
    assert {u["what"] for u in last["undone"]} == {f"power mode {profile.default_mode.name} → {profile.max_mode.name}",
                                                   "clocks locked", "module paused"}
    print(f"board restored {took:.1f} s after SIGKILL (watchdog timeout 8 s)")
    # the next run right after: the module the killed run paused runs again, its endless bench is gone
    done, junit = suites(tmp_path, "after", "-k", "health", tests="suites/test_correctness.py")
    assert list(outcomes(junit).values()) == ["passed"], done.stdout[-3000:]
    assert not board_runs(container, "module bench --duration 30")

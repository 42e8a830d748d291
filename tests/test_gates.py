"""Verdicts on throughput: the profile's floors (only where they apply) and the baseline gate (direction- and
noise-aware), and the suite options that feed them, refused before a board is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from harness.errors import ConfigError, HarnessError
from harness.gates import GatePolicy, check_floors, compare, load_policy, resolve_baseline
from harness.gates.baseline import Baseline, MetricRule
from harness.history import History
from harness.profiles import ThroughputFloor, get_profile
from harness.report import load_run
from harness.results import ResultsWriter, Row, RowContext, verdict_row

REPO = Path(__file__).resolve().parents[1]
POLICY = GatePolicy(noise_factor=2.0, metrics={"raw_fps": MetricRule(better="higher", threshold=0.10),
                                               "latency_p50": MetricRule(better="lower", threshold=0.10)})
CONTEXT = RowContext(run="base", board="nx-01", profile="xavier-nx", suite="test_throughput", test="t",
                     power_mode="MODE_15W_6CORE", precision="fp16", batch=1, backend="tensorrt",
                     device="cuda:0 Xavier", quantizer="tensorrt-fp16", phase="raw")


def fig(metric: str, value: float, spread: float | None = 0.01, run: str = "base", **changes: object) -> Row:
    return replace(CONTEXT, run=run, **changes).row(metric, value, "x", spread=spread)  # type: ignore[arg-type]


def gate(*pairs: tuple[Row, Row]) -> list[bool]:
    return [c.regressed for c in compare([b for b, _ in pairs], [n for _, n in pairs], POLICY)]


def test_the_gate_knows_which_way_is_worse() -> None:
    assert gate((fig("raw_fps", 100), fig("raw_fps", 85, run="now"))) == [True]   # 15 % fewer frames
    assert gate((fig("raw_fps", 100), fig("raw_fps", 130, run="now"))) == [False]  # faster is never a regression
    assert gate((fig("latency_p50", 10), fig("latency_p50", 11.5, run="now"))) == [True]
    assert gate((fig("latency_p50", 10), fig("latency_p50", 8, run="now"))) == [False]
    assert gate((fig("raw_fps", 100), fig("raw_fps", 92, run="now"))) == [False]  # within the 10 % threshold


def test_the_gate_allows_for_the_runs_own_noise() -> None:
    noisy = fig("raw_fps", 85, spread=0.09, run="now")  # rounds scattered 9 %: 2 x 9 % = 18 % allowed
    (comparison,) = compare([fig("raw_fps", 100)], [noisy], POLICY)
    assert not comparison.regressed and comparison.allowed == pytest.approx(0.18)
    assert gate((fig("raw_fps", 100, spread=0.09), fig("raw_fps", 75, run="now"))) == [True]
    assert comparison.describe() == \
        "raw_fps [raw]: baseline 100, now 85 (-15.0%; higher is better, allowed 18.0% worse; baseline run base)"


def test_only_measured_figures_of_the_same_configuration_are_gated() -> None:
    base = fig("raw_fps", 100)
    assert gate((base, fig("raw_fps", 50, run="now", batch=4))) == []  # another batch
    assert gate((base, fig("raw_fps", 50, run="now", quantizer="ort-float16", backend="onnxruntime"))) == []
    modeled = replace(fig("raw_fps", 50, run="now"), source="modeled")
    assert compare([base], [modeled], POLICY) == []
    assert compare([replace(base, source="modeled")], [fig("raw_fps", 50, run="now")], POLICY) == []
    assert gate((base, fig("power_mean", 50, run="now"))) == []  # not in the policy


def test_floors_judge_only_the_backend_and_measured_figures_they_were_set_for() -> None:
    trt = ThroughputFloor(power_mode="MODE_15W_6CORE", precision="fp16", batch=1, backend="tensorrt", device="cuda",
                          metric="raw_fps", min=300)
    per_w = ThroughputFloor(power_mode=2, precision="fp16", batch=1, backend="tensorrt", metric="fps_per_w", min=20)
    profile = get_profile("xavier-nx")
    floors = partial(check_floors, [trt, per_w], profile, profile.mode("MODE_15W_6CORE"))
    on_gpu = floors("fp16", 1, backend="tensorrt", device="cuda:0 Xavier",
                    figures={"raw_fps": (250.0, "measured"), "fps_per_w": (25.0, "measured")})
    assert [c.failed for c in on_gpu] == [True, False]
    assert on_gpu[0].describe() == "raw_fps (floor 300 for tensorrt on cuda): 250"
    on_cpu = floors("fp16", 1, backend="onnxruntime", device="cpu", figures={"raw_fps": (25.0, "measured")})
    assert [c.failed for c in on_cpu] == [False, False]
    assert on_cpu[0].not_applicable == "this board runs onnxruntime on cpu"
    modeled = floors("fp16", 1, backend="tensorrt", device="cuda:0 Xavier",
                     figures={"raw_fps": (400.0, "measured"), "fps_per_w": (1.0, "modeled")})
    assert [c.failed for c in modeled] == [False, False]
    assert modeled[1].not_applicable == "fps_per_w is modeled on this board, not measured"
    assert floors("int8", 1, backend="tensorrt", device="cuda", figures={}) == []
    missing = floors("fp16", 1, backend="tensorrt", device="cuda", figures={})
    assert all(c.failed for c in missing)  # a floor whose figure never came is not passed


def write_run(report: Path, run: str, board: str, value: float, passed: bool = True, batch: int = 1) -> Path:
    """A run folder with one raw_fps figure and its test's verdict row, as the suites write them."""
    context = replace(CONTEXT, run=run, board=board, batch=batch, test=f"test_throughput[b{batch}]")
    with ResultsWriter(report / run / "results.csv") as writer:
        writer.write(context.row("raw_fps", value, "fps", spread=0.01))
        writer.write(verdict_row(replace(context, phase=None), passed))
    return report / run


def resolve(spec: str, report: Path, history: History | None = None, **kwargs: object) -> Baseline:
    return resolve_baseline(spec, report, metrics=POLICY.metrics, history=history, **kwargs)  # type: ignore[arg-type]


def test_latest_baseline_is_per_figure_the_newest_earlier_passing_one(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "nx-01", 1.0)
    write_run(tmp_path, "b", "nx-01", 2.0)
    write_run(tmp_path, "b", "nx-01", 20.0, batch=4)
    write_run(tmp_path, "c", "nx-01", 3.0, passed=False)  # a failed night is nobody's baseline
    write_run(tmp_path, "d", "orin-01", 4.0)
    write_run(tmp_path, "now", "nx-01", 5.0)
    found = resolve("latest", tmp_path, boards={"nx-01"}, exclude={"now"})
    assert sorted((r.run, r.batch, r.value) for r in found.rows) == [("b", 1, 2.0), ("b", 4, 20.0)]
    assert found.missing == {}
    write_run(tmp_path, "e", "nx-01", 6.0, batch=4)  # batch 4 passed again later: the two figures' runs differ
    found = resolve("latest", tmp_path, boards={"nx-01"}, exclude={"now"})
    assert sorted((r.run, r.batch) for r in found.rows) == [("b", 1), ("e", 4)] and found.runs == ["b", "e"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(resolve(today, tmp_path, boards={"nx-01"}, exclude={"now"}).rows) == 2
    assert resolve("2000-01-01", tmp_path, boards={"nx-01"}).rows == ()  # nothing measured that early


def test_a_board_without_a_passing_run_says_whether_it_is_its_first(tmp_path: Path) -> None:
    write_run(tmp_path, "failed", "nx-01", 3.0, passed=False)
    found = resolve("latest", tmp_path, boards={"nx-01", "agx-01"})
    assert found.rows == ()
    assert found.missing["agx-01"] == "agx-01: first run: this is its baseline"
    assert found.missing["nx-01"].startswith("nx-01: no earlier run passed its throughput tests")


def test_a_named_run_is_a_folder_a_results_file_or_a_run_of_the_history(tmp_path: Path) -> None:
    reports, elsewhere = tmp_path / "reports", tmp_path / "elsewhere"
    write_run(reports, "a", "nx-01", 1.0)
    history = History(tmp_path / "history.sqlite")
    history.import_run(load_run(write_run(elsewhere, "old", "nx-01", 7.0)))
    assert resolve(str(reports / "a"), reports, boards={"nx-01"}).rows[0].value == 1.0
    assert resolve("a", reports, boards={"nx-01"}).rows[0].value == 1.0  # a run's name in the report folder
    assert resolve("old", reports, history, boards={"nx-01"}).rows[0].value == 7.0  # a run's name in the history
    with pytest.raises(ConfigError, match=r"--baseline missing: no such run folder, and no run of that name in "):
        resolve("missing", reports, history, boards={"nx-01"})


def test_latest_comes_from_the_history_when_the_report_folder_is_new(tmp_path: Path) -> None:
    """A CI checkout has no earlier run folders: the nights before are in the history, failed ones too."""
    history = History(tmp_path / "history.sqlite")
    for run, value, passed in (("night-1", 10.0, True), ("night-2", 9.0, False)):
        history.import_run(load_run(write_run(tmp_path / "runner", run, "nx-01", value, passed)))
    fresh = tmp_path / "checkout"
    fresh.mkdir()
    found = resolve("latest", fresh, history, boards={"nx-01"})
    assert [(r.run, r.value) for r in found.rows] == [("night-1", 10.0)]
    assert "the history sqlite:///" in found.describe()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert [r.run for r in resolve(today, fresh, history, boards={"nx-01"}).rows] == ["night-1"]
    assert resolve("2000-01-01", fresh, history, boards={"nx-01"}).rows == ()  # up to a day: in the database
    tonight = resolve("latest", fresh, history, boards={"nx-01"}, exclude={"night-1", "night-2"})
    assert tonight.missing == {"nx-01": "nx-01: first run: this is its baseline"}  # its own runs do not count
    (tmp_path / "history.sqlite").write_bytes(b"not a database")
    with pytest.raises(HarnessError, match="history"):  # unreadable: an error, never a silent first run
        resolve("latest", fresh, History(tmp_path / "history.sqlite"), boards={"nx-01"})


def test_the_checked_in_policy_loads_and_a_broken_one_says_where(tmp_path: Path) -> None:
    policy = load_policy(REPO / "suites" / "regression.yaml")
    assert policy.metrics["raw_fps"].better == "higher" and policy.metrics["latency_p50"].better == "lower"
    bad = tmp_path / "regression.yaml"
    bad.write_text("metrics:\n  raw_fps: {better: up, threshold: 0.1}\n")
    with pytest.raises(ConfigError, match=r"regression.yaml: metrics.raw_fps.better"):
        load_policy(bad)


@pytest.mark.parametrize(("args", "message"), [
    (["--baseline", "/nonexistent/run"], "--baseline /nonexistent/run: no such run folder"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--duration", "-1"], "--duration must be more than 0 seconds"),
    (["--precision", "fp64"], "--precision: unknown fp64; choose from fp32, fp16, int8"),
    (["--batch", "two"], "--batch: expected 'profile' or positive integers"),
    (["--module", "/tmp"], "not a module directory"),
    (["--report-dir", "/etc/hostname"], "--report-dir /etc/hostname: not a folder this user can write (File exists)"),
    (["--report-dir", "/proc/self"], "--report-dir /proc/self: not a folder this user can write"),
])
def test_bad_suite_options_are_one_line_before_any_board(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "suites", "--device=virtual:nano", *args,
                           "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error: nothing ran
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize(("modes", "message"), [
    ("bogus", "profile nano: power mode: unknown mode 'bogus'; known: 0=MAXN, 1=5W"),
    ("", "--power-mode: no power mode given"),
])
def test_a_power_mode_the_board_lacks_stops_the_run_before_any_test(modes: str, message: str) -> None:
    """Checked against the board's profile (the leased one's: a lab tag may span profiles), once, before tests. The
    profile has no board here, which CI=true refuses first: this is the interactive check."""
    interactive = {name: value for name, value in os.environ.items() if name != "CI"}
    done = subprocess.run([sys.executable, "-m", "pytest", "suites", "--device=nano", "--power-mode", modes,
                           "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=interactive)
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.strip() == f"Exit: jetson-hil: {message}" if modes else message in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "passed" not in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    ([], "CI=true and no --device: the suites would skip every test and pass having run nothing"),
    (["--device", "tag:nightlly"], "CI=true: no board matches --device 'tag:nightlly'"),
])
def test_under_ci_a_run_that_selects_no_board_is_a_usage_error(args: list[str], message: str) -> None:
    """A typo in a CI job must not be a green night that ran nothing."""
    done = subprocess.run([sys.executable, "-m", "pytest", "suites", *args, "-p", "no:cacheprovider"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "CI": "true"})
    assert done.returncode == 4, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_interactively_the_suites_skip_without_a_board_and_say_how_to_choose_one() -> None:
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    done = subprocess.run([sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "jetson-hil: no --device: every suite test skips; pass --device" in done.stdout
    assert " passed" not in done.stdout and " skipped" in done.stdout.splitlines()[-1]

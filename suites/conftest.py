"""Fixtures the suites share: the deployed module, the run's results file, power mode control.

Everything measured goes to ``<report-dir>/<run>/results.csv`` the moment it is measured, and
throughput also to ``benchmark.json`` (pytest-benchmark's format) at the end of the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.board import Board
from harness.board.guard import PowerGuard
from harness.deploy import ModuleHandle, ServiceSpec, deploy_native
from harness.errors import HarnessError
from harness.profiles import DeviceProfile, PowerMode
from harness.pytest_plugin import selected_profile
from harness.results import ResultsWriter, RowContext, read_modeled, write_benchmark_json

RUN_DIR = pytest.StashKey[Path]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jetson-hil suites")
    group.addoption("--duration", type=float, default=8.0, metavar="SECONDS",
                    help="length of each throughput measurement, per part (raw, pipeline) (default: %(default)s)")
    group.addoption("--telemetry-interval", type=int, default=100, metavar="MS",
                    help="tegrastats sampling interval during measurements (default: %(default)s)")
    group.addoption("--run-id", default=None, help="name of this run's results folder (default: time and board)")


def power_modes(config: pytest.Config, profile: DeviceProfile) -> list[PowerMode]:
    """--power-mode: comma-separated ids or names, 'default', 'max' or 'all'."""
    wanted = config.getoption("--power-mode")
    if wanted.strip() == "all":
        return list(profile.power_modes)
    modes: list[PowerMode] = []
    for key in (k.strip() for k in wanted.split(",") if k.strip()):
        mode = profile.default_mode if key == "default" else profile.max_mode if key == "max" else profile.mode(key)
        if mode not in modes:
            modes.append(mode)
    return modes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Throughput tests run per power mode and batch size of the selected board's profile."""
    if "power_mode" not in metafunc.fixturenames:
        return
    try:
        profile = selected_profile(metafunc.config)
    except HarnessError:  # the board fixture reports it, once, with the reason
        profile = None
    if profile is None:
        metafunc.parametrize(("power_mode", "batch"), [pytest.param(None, 1, id="no-board")])
        return
    cases = [(m, b) for m in power_modes(metafunc.config, profile) for b in profile.batch_sizes]
    metafunc.parametrize(("power_mode", "batch"), cases, ids=[f"{m.name}-b{b}" for m, b in cases])


@pytest.fixture(scope="session")
def run_id(request: pytest.FixtureRequest, board: Board) -> str:
    return request.config.getoption("--run-id") or f"{time.strftime('%Y%m%dT%H%M%S')}-{board.name}"


@pytest.fixture(scope="session")
def run_dir(request: pytest.FixtureRequest, report_dir: Path, run_id: str) -> Path:
    path = report_dir / run_id
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[RUN_DIR] = path
    return path


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Say where this run's results are, also after failures (rows are written as they are measured)."""
    path = config.stash.get(RUN_DIR, None)
    if path is not None:
        terminalreporter.write_sep("-", "jetson-hil results")
        for name in ("results.csv", "benchmark.json"):
            if (path / name).is_file():
                terminalreporter.write_line(f"{name}: {path / name}")


@pytest.fixture(scope="session")
def results(run_dir: Path) -> Iterator[ResultsWriter]:
    with ResultsWriter(run_dir / "results.csv") as writer:
        yield writer


@pytest.fixture(scope="session")
def modeled(board: Board) -> frozenset[str]:
    """Quantities this board models instead of measuring (a virtual board's power, for example)."""
    return read_modeled(board)


@pytest.fixture(scope="session")
def benchmarks(request: pytest.FixtureRequest, run_dir: Path, board: Board) -> Iterator[list]:
    """pytest-benchmark entries, written to benchmark.json at the end (also after failures)."""
    entries: list = []
    yield entries
    if entries:
        write_benchmark_json(run_dir / "benchmark.json", entries, machine_info={"node": board.name,
                                                                             "profile": board.profile.name})


@pytest.fixture(scope="session")
def deployed(board: Board, record_testsuite_property) -> Iterator[ModuleHandle]:
    """The reference module deployed natively and running; stopped at the end of the session."""
    try:
        handle = deploy_native(board, ServiceSpec())
    except HarnessError as exc:
        pytest.fail(f"deploying the module to {board.name} failed: {exc}", pytrace=False)
    info = handle.api("/info")
    record_testsuite_property("model_sha256", info["model_sha256"])
    record_testsuite_property("module_backend", f"{info['backend']} ({info['device']})")
    for name, version in info.get("versions", {}).items():
        record_testsuite_property(name, version)
    record_testsuite_property("deploy_seconds", str(handle.report.seconds))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def power_guard(board: Board) -> Iterator[PowerGuard]:
    """Power mode and clocks as found at the start, restored at the end whatever happened."""
    with PowerGuard(board) as guard:
        yield guard


@pytest.fixture
def row_context(request: pytest.FixtureRequest, run_id: str, board: Board) -> RowContext:
    return RowContext(run=run_id, board=board.name, profile=board.profile.name,
                      suite=Path(str(request.node.path)).stem, test=request.node.name)


@pytest.fixture(scope="session")
def module_info(deployed: ModuleHandle) -> dict:
    return deployed.api("/info")


@pytest.fixture(scope="session")
def reference_model_sha() -> str:
    from module.model import load_model

    return load_model().sha256


"""Native deployment and power-mode guarding on a virtual Xavier NX, over SSH only."""

from __future__ import annotations

import shutil
import time

import pytest

from harness.board import Board
from harness.deploy import NativeDeployer, ServiceSpec, deploy_native
from harness.errors import DeployError

pytestmark = [pytest.mark.virtual, pytest.mark.parametrize("virtual_board", ["xavier-nx"], indirect=True)]


def _pid(board: Board, root: str, name: str) -> str:
    return board.transport.run(f"cat {root}/run/{name}.pid 2>/dev/null", timeout=15).stdout.strip()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout} s")


def test_second_deploy_of_an_unchanged_module_copies_and_restarts_nothing(virtual_board: Board) -> None:
    first = deploy_native(virtual_board, ServiceSpec(fps_cap=5))
    first.close()
    started = time.monotonic()
    second = deploy_native(virtual_board, ServiceSpec(fps_cap=5))
    elapsed = time.monotonic() - started
    try:
        assert not second.report.changed, second.report
        assert second.api("/health")["status"] == "running"
        print(f"redeploy of an unchanged module: {elapsed:.2f} s")
    finally:
        second.close()


def test_changed_service_options_restart_the_service_without_copying(virtual_board: Board) -> None:
    deploy_native(virtual_board, ServiceSpec(fps_cap=5)).close()
    handle = deploy_native(virtual_board, ServiceSpec(fps_cap=4))
    try:
        assert handle.report.restarted_service and not handle.report.copied_bundle
        assert handle.api("/config")["fps_cap"] == 4
    finally:
        handle.close()


def test_a_changed_module_file_is_copied(virtual_board: Board, tmp_path) -> None:
    from harness.deploy.bundle import MODULE_DIR

    changed = tmp_path / "module"
    shutil.copytree(MODULE_DIR, changed, ignore=shutil.ignore_patterns("training", "__pycache__"))
    (changed / "CHANGED.txt").write_text("a new file changes the bundle hash\n")
    handle = NativeDeployer(virtual_board, module_dir=changed).deploy(ServiceSpec(fps_cap=5))
    try:
        assert handle.report.copied_bundle
        root = handle.root
        assert virtual_board.transport.run(f"cat {root}/app/module/CHANGED.txt", timeout=15).ok
    finally:
        handle.close()
        deploy_native(virtual_board, ServiceSpec(fps_cap=5)).close()  # back to the repo's module


def test_the_supervisor_restarts_a_killed_module_and_stop_ends_both(virtual_board: Board) -> None:
    handle = deploy_native(virtual_board, ServiceSpec(fps_cap=5))
    root = handle.root
    old = _pid(virtual_board, root, "module")
    virtual_board.transport.run(f"kill -KILL {old}", timeout=15).check()
    _wait(lambda: _pid(virtual_board, root, "module") not in ("", old), 15, "the supervisor did not restart the module")
    assert handle.wait_healthy(timeout=60)["status"] == "running"
    assert "restarting" in handle.logs(50)
    supervisor = _pid(virtual_board, root, "supervisor")
    handle.stop()
    assert not virtual_board.transport.run(f"kill -0 {supervisor}", timeout=15).ok
    with pytest.raises(DeployError):
        handle.api("/health", timeout=2)


def test_a_module_that_cannot_start_fails_the_deploy_early_with_its_reason(virtual_board: Board) -> None:
    """Exit 2 is final for the supervisor: the deploy says so well before its 120 s health timeout."""
    started = time.monotonic()
    try:
        with pytest.raises(DeployError, match=r"supervisor gave up.*unsupported uplink sink 'kafka://broker/t'"):
            deploy_native(virtual_board, ServiceSpec(fps_cap=5, sink="kafka://broker/t"))
        assert time.monotonic() - started < 60
    finally:
        deploy_native(virtual_board, ServiceSpec(fps_cap=5)).close()  # leave a healthy module for the next test

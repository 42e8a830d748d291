"""The board state journal and its watchdog, on a virtual board: a session's changes never outlive it for long.

A child process plays the harness: it opens the board with a short watchdog timeout, switches the power
mode, locks the clocks, starts a measurement that never ends and is killed with SIGKILL. The board must
put itself back within the timeout, after a reboot too, and a session started right after the kill must
restore what was left and record the board's true pristine state, not the killed session's leftovers.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.board import Board
from harness.board.guard import PowerGuard
from harness.board.state import STATE_DIR
from harness.inventory import Lab
from harness.lab import open_board
from harness.profiles import PowerMode

pytestmark = [pytest.mark.virtual, pytest.mark.parametrize("virtual_board", ["nano"], indirect=True)]
REPO = Path(__file__).resolve().parents[1]
WATCHDOG_S = 6.0

# The harness, killed mid-measurement: changes the board through its state, then runs a "bench" forever.
HARNESS = textwrap.dedent("""
    import sys
    from harness.board.guard import PowerGuard
    from harness.inventory import Lab
    from harness.lab import load_providers, open_board
    load_providers()
    with open_board("virtual:" + sys.argv[1], Lab(), watchdog_s=float(sys.argv[3])) as board:
        guard = PowerGuard(board)
        guard.set_mode(int(sys.argv[2]))
        guard.lock_clocks()
        print("READY", flush=True)
        board.transport.run("sleep 600", timeout=700)
""")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check` held; fails naming `what` after `timeout` (polls, bounded)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not within {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - started


def other_mode(board: Board) -> PowerMode:
    now = board.power_mode().id
    return next(m for m in board.profile.power_modes if m.id != now)


@pytest.fixture
def killed_harness(virtual_board: Board, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Start the child harness (its own lease folder: this session holds ours); call the result to SIGKILL it."""
    env = {**os.environ, "JETSON_HIL_LEASE_DIR": str(tmp_path / "leases"), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", HARNESS, virtual_board.profile.name,
                              str(other_mode(virtual_board).id), str(WATCHDOG_S)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 120)
    assert ready and child.stdout.readline().strip() == "READY", child.stderr.read() if child.poll() else "no READY"
    assert virtual_board.clocks_status().locked

    def kill() -> None:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    yield kill
    if child.poll() is None:
        kill()


def journal(board: Board) -> dict:
    return json.loads(board.transport.run(f"cat {STATE_DIR}/journal.json", timeout=15).check().stdout)


def last_restore(board: Board, since: float) -> dict:
    """The watchdog's restore record if it was written after `since` (epoch s), else {} (an older one, or none)."""
    found = board.transport.run(f"cat {STATE_DIR}/last-restore.json", timeout=15).stdout
    record = json.loads(found) if found.strip() else {}
    return record if record.get("restored_at", 0) >= since else {}


def restored(board: Board, mode: int) -> Callable[[], bool]:
    def check() -> bool:
        return board.power_mode().id == mode and not board.clocks_status().locked
    return check


def test_a_killed_harness_leaves_a_board_that_restores_itself(virtual_board: Board, killed_harness) -> None:
    left = journal(virtual_board)
    assert [c["what"] for c in left["changes"]][-1] == "clocks locked"  # journaled before the change was made
    pristine = left["pristine"]["power_mode"]
    killed_at = time.time()
    killed_harness()
    took = wait_for(restored(virtual_board, pristine), WATCHDOG_S + 20, "the board's own restore")
    assert took <= WATCHDOG_S + 5, f"restored {took:.1f} s after SIGKILL, timeout {WATCHDOG_S} s"
    wait_for(lambda: bool(last_restore(virtual_board, killed_at)), 10, "the restore's record")  # written after it
    last = last_restore(virtual_board, killed_at)
    assert last["reason"] == f"no heartbeat from the harness for {WATCHDOG_S:.0f} s" and len(last["killed"]) == 1
    assert not virtual_board.transport.run(f"test -e {STATE_DIR}/journal.json", timeout=15).ok
    assert not virtual_board.transport.run("pgrep -f 'sleep 60[0]'", timeout=15).ok  # its bench died with it


def test_a_session_right_after_a_kill_records_the_true_pristine_state(virtual_board: Board, killed_harness) -> None:
    pristine = journal(virtual_board)["pristine"]["power_mode"]
    leftover = virtual_board.power_mode().id
    assert leftover != pristine
    killed_harness()
    # at once, well before the watchdog's timeout: the dead holder's journal is restored by the new session
    fresh = Board(virtual_board.name, virtual_board.profile, virtual_board.transport, watchdog_s=WATCHDOG_S)
    messages = fresh.state.settle()
    assert len(messages) == 1 and messages[0].startswith("restored now the state left by pid")
    assert "power mode" in messages[0] and "clocks locked" in messages[0]
    assert messages[0].endswith("; killed its 1 leftover process(es)")  # its endless "bench"
    assert not virtual_board.transport.run("pgrep -f 'sleep 60[0]'", timeout=15).ok
    try:
        assert fresh.state.begin()["power_mode"] == pristine  # not the killed run's leftover mode
        assert fresh.state.begin()["clocks_locked"] is False
    finally:
        fresh.state.restore()
    assert fresh.power_mode().id == pristine


def test_a_board_rebooted_mid_run_restores_after_boot(virtual_board: Board, killed_harness) -> None:
    pristine = journal(virtual_board)["pristine"]["power_mode"]
    killed_at = time.time()
    killed_harness()
    virtual_board.reboot(timeout=120)  # the running watchdog dies with the boot; the boot starts another
    took = wait_for(lambda: virtual_board.power_mode().id == pristine, WATCHDOG_S + 30, "the restore after boot")
    assert took <= WATCHDOG_S + 10
    # the record is written once the undo commands ran: the restored mode can show before it
    wait_for(lambda: bool(last_restore(virtual_board, killed_at)), 10, "the restore's record")
    assert last_restore(virtual_board, killed_at)["reason"].startswith("no heartbeat from the harness")


def test_a_session_that_ends_badly_still_puts_the_board_back(virtual_board: Board, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETSON_HIL_LEASE_DIR", str(tmp_path / "leases"))  # this session holds the usual lease
    start = virtual_board.power_mode()
    target = other_mode(virtual_board)
    with pytest.raises(RuntimeError, match="midway"), open_board(f"virtual:{virtual_board.profile.name}", Lab(),
                                                                 watchdog_s=WATCHDOG_S) as board:
        guard = PowerGuard(board)
        guard.set_mode(target.id)
        guard.lock_clocks()
        guard.set_mode(start.id)
        guard.set_mode(target.id)  # the same undo is journaled once
        assert board.state.changes[0].undo == f"echo NO | nvpmodel -m {start.id}" and len(board.state.changes) == 2
        raise RuntimeError("test failed midway")
    assert virtual_board.power_mode().id == start.id
    assert not virtual_board.clocks_status().locked
    assert not virtual_board.transport.run(f"test -e {STATE_DIR}/journal.json", timeout=15).ok
    wait_for(lambda: not virtual_board.transport.run("pgrep -f 'watchdog[.]py'", timeout=15).ok, 10,
             "the watchdog leaving once the journal is gone")

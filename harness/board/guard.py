"""Power mode and clocks changed for a measurement are put back, also when the harness dies.

On entry the guard records the power mode, saves the clocks with ``jetson_clocks --store`` and
arms a dead-man on the board: a detached shell that restores both after ``deadman_s`` unless
the guard disarms it first. Every change re-arms it, so a harness killed mid-suite leaves a
board that heals itself within ``deadman_s``.
"""

from __future__ import annotations

import shlex
import uuid

from harness.board.board import Board, SetResult
from harness.board.nvpmodel import PowerModeState
from harness.errors import HarnessError

DEADMAN_S = 900


class PowerGuard:
    """Context manager: ``set_mode``/``lock_clocks`` inside, everything restored on exit."""

    def __init__(self, board: Board, deadman_s: float = DEADMAN_S) -> None:
        self.board = board
        self.deadman_s = deadman_s
        self.token = uuid.uuid4().hex[:8]
        self.clocks_file = f"/tmp/jetson-hil-clocks-{self.token}"
        self.start_mode: PowerModeState | None = None
        self._deadman_pid: str | None = None

    # dead-man -------------------------------------------------------------------------------------
    def _restore_script(self) -> str:
        assert self.start_mode is not None
        s = self.board.sudo
        return f"{s}nvpmodel -m {self.start_mode.id}; {s}jetson_clocks --restore {shlex.quote(self.clocks_file)}"

    def _arm(self) -> None:
        self._disarm()
        body = f"sleep {int(self.deadman_s)}; {self._restore_script()}"
        command = f"setsid sh -c {shlex.quote(body)} >/dev/null 2>&1 </dev/null & echo $!"
        self._deadman_pid = self.board.transport.run(command, timeout=30).check().stdout.strip()

    def _disarm(self) -> None:
        if self._deadman_pid:
            # the dead-man's shell and its sleep share a process group (setsid): end both
            self.board.transport.run(f"kill -TERM -- -{self._deadman_pid} 2>/dev/null; true", timeout=30)
            self._deadman_pid = None

    # changes --------------------------------------------------------------------------------------
    def set_mode(self, mode: int | str) -> SetResult:
        self._arm()
        return self.board.set_power_mode(mode)

    def lock_clocks(self) -> None:
        self._arm()
        self.board.clocks.lock()

    def restore(self) -> None:
        """Put the starting mode and clocks back (idempotent), then disarm the dead-man."""
        if self.start_mode is None:
            return
        self.board.set_power_mode(self.start_mode.id)
        self.board.clocks.restore(self.clocks_file)
        self._disarm()

    def __enter__(self) -> PowerGuard:
        self.start_mode = self.board.power_mode()
        self.board.clocks.store(self.clocks_file)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.restore()
        except HarnessError as error:
            raise HarnessError(
                f"{self.board.name}: could not restore power mode {self.start_mode.name if self.start_mode else '?'} "
                f"and clocks ({error}); the board's dead-man restores them within {self.deadman_s:.0f} s"
            ) from error

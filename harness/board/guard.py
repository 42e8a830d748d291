"""Power mode and clocks for a measurement, each change journaled in the board's state before it is made.

The board state (`harness.board.state`) records the pristine power mode and clocks before the first change
and puts them back: at the end of the session, or through the board's watchdog within its timeout when
the harness dies, the link is cut or the board reboots.
"""

from __future__ import annotations

from harness.board.board import Board, SetResult


class PowerGuard:
    """``set_mode``/``lock_clocks`` for the suites; the board's state restores both."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def set_mode(self, mode: int | str) -> SetResult:
        target = self.board.profile.mode(mode)
        pristine = self.board.state.begin()
        return self.board.state.change(f"power mode {pristine['power_mode_name']} → {target.name}",
                                       f"echo NO | nvpmodel -m {pristine['power_mode']}",
                                       lambda: self.board.set_power_mode(target.id))

    def lock_clocks(self) -> None:
        state = self.board.state
        state.begin()
        state.change("clocks locked", f"jetson_clocks --restore {state.clocks_file}", self.board.clocks.lock)

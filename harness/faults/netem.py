"""Degraded link with the kernel's netem, the way Microsoft's NetworkController does it: a prio qdisc on the
board's interface towards the uplink, netem under one band, and a u32 filter sending only the uplink's
traffic (destination address and port) there. Egress only (board → broker); SSH is not shaped.

Kernels without sch_netem (this project's CI machine among them) answer "Specified qdisc kind is unknown":
that is FaultUnavailable, and the caller falls back to the relay (`relayed_link`)."""

from __future__ import annotations

import shlex

from harness.board import Board
from harness.errors import HarnessError
from harness.faults.base import FaultUnavailable, require_tool
from harness.faults.relay import LinkShape

_DEVICE = "dev=$(ip route get {address} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1); [ -n \"$dev\" ] || exit 4"


class Netem:
    """netem delay/jitter/rate on the board's egress to `address`:`port`."""

    method = "netem"
    effect = "degraded"

    def __init__(self, board: Board, address: str, port: int, shape: LinkShape) -> None:
        if shape.reset_every_s:
            raise FaultUnavailable("netem cannot reset connections; the relay can")
        self.board, self.address, self.port, self.shape = board, address, port, shape
        require_tool(board, "tc", "a degraded link")
        self._device = _DEVICE.format(address=shlex.quote(address))
        self._undo = f"{self._device}; tc qdisc del dev \"$dev\" root 2>/dev/null; true"

    def describe(self) -> str:
        return f"uplink {self.address}:{self.port} degraded by netem: {self.shape.describe()}"

    def apply(self) -> None:
        shape = self.shape
        netem = f"delay {shape.delay_ms:g}ms {shape.jitter_ms:g}ms" + (
            f" rate {shape.rate_kbit:g}kbit" if shape.rate_kbit else "")
        script = (f"{self._device}; tc qdisc add dev \"$dev\" root handle 1: prio priomap {' '.join(['0'] * 16)} "
                  f"|| exit 5; if ! out=$(tc qdisc add dev \"$dev\" parent 1:2 handle 20: netem {netem} 2>&1); then "
                  f"tc qdisc del dev \"$dev\" root; echo \"$out\" >&2; exit 3; fi; "
                  f"tc filter add dev \"$dev\" parent 1:0 protocol ip u32 match ip dst {self.address}/32 "
                  f"match ip dport {self.port} 0xffff flowid 1:2")
        try:
            self.board.state.change(self.describe(), self._undo,
                                    lambda: self.board.run_root(script, "shaping the uplink with netem"))
        except HarnessError as exc:
            self.board.state.revert(self._undo)
            if "unknown" in str(exc).lower():
                said = str(exc).rsplit("failed: ", 1)[-1]
                raise FaultUnavailable(f"the board's kernel has no netem (tc: {said})") from None
            raise

    def remove(self) -> None:
        self.board.state.revert(self._undo)

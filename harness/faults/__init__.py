"""Faults injected between a board and its uplink, one concept per file, each journaled in the board state
(`harness.board.state`) so the board's watchdog removes it if the harness dies: a link cut (iptables), a
degraded link (netem where the kernel has it, else a TCP relay on the harness host)."""

from __future__ import annotations

from harness.faults.base import Fault, FaultUnavailable, board_address, controller_address
from harness.faults.degraded import DegradedLink
from harness.faults.link_cut import LinkCut
from harness.faults.netem import Netem
from harness.faults.relay import LinkShape, TcpRelay
from harness.faults.relayed_link import RelayedLink

__all__ = ["DegradedLink", "Fault", "FaultUnavailable", "LinkCut", "LinkShape", "Netem", "RelayedLink", "TcpRelay",
           "board_address", "controller_address"]

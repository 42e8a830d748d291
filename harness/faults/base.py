"""What every injected fault is: applied through the board state (journaled with its undo before it is made, so
the board's watchdog removes it if the harness dies), removed by its owner, described in one line."""

from __future__ import annotations

import shlex
from typing import Protocol

from harness.board import Board
from harness.errors import HarnessError


class Fault(Protocol):
    """A fault on the link between a board and its uplink."""

    #: how it is made, for the results: "iptables", "netem", "relay"
    method: str
    #: what it does to the link, for the timeline: "down" or "degraded"
    effect: str

    def apply(self) -> None: ...

    def remove(self) -> None: ...

    def describe(self) -> str: ...


class FaultUnavailable(HarnessError):
    """The board cannot host this fault (a missing tool or kernel module); the reason says what to install."""


def require_tool(board: Board, tool: str, purpose: str) -> None:
    """One clear line when the board lacks a tool a fault needs."""
    found = board.transport.run(f"{board.sudo}sh -c {shlex.quote(f'command -v {tool}')}", timeout=15)
    if not found.ok or not found.stdout.strip():
        raise FaultUnavailable(f"{board.name} has no {tool}: {purpose} needs it; install it on the board "
                               f"(Debian/L4T: apt-get install {tool})")


def board_address(board: Board, host: str) -> str:
    """The IPv4 address `host` has on the board (iptables and tc match addresses, not names)."""
    result = board.transport.run(f"getent ahostsv4 {shlex.quote(host)}", timeout=15)
    address = result.stdout.split()[0] if result.ok and result.stdout.split() else ""
    if not address:
        raise HarnessError(f"{board.name} cannot resolve the uplink host {host!r}: add it to the board's DNS or "
                           "/etc/hosts, or name the broker by address in the lab file")
    return address


def controller_address(board: Board) -> str:
    """This harness host's address as the board reaches it: where the board's SSH session comes from (the
    local transport runs on the board itself: 127.0.0.1)."""
    result = board.transport.run('echo "${SSH_CLIENT%% *}"', timeout=15)
    return (result.stdout.strip() if result.ok else "") or "127.0.0.1"

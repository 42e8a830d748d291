"""Where the uplink broker is, seen from both ends: the name the board's module publishes to and the address
the board resolves it to (faults match addresses), and how this host reaches it to subscribe."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.board import Board
from harness.errors import HarnessError
from harness.faults import board_address, controller_address
from harness.inventory import UplinkConfig
from harness.uplink.broker import HostBroker

#: the name virtual boards (and labs that set it in the boards' /etc/hosts) give the harness host
HARNESS_HOST = "harness-host"


@dataclass(frozen=True)
class UplinkEndpoint:
    board_host: str  # as the module on the board names it
    board_address: str  # what the board resolves that to
    port: int  # the broker's port on the board's side
    local: tuple[str, int]  # host, port as this host reaches the broker
    topic: str
    started_here: bool  # mosquitto brought by the harness for this session

    @property
    def sink_url(self) -> str:
        """The module's --sink."""
        return f"mqtt://{self.board_host}:{self.port}/{self.topic}"

    def describe(self) -> str:
        where = "mosquitto started by the harness" if self.started_here else "the lab's broker"
        return f"{where} at {self.board_host}:{self.port} ({self.board_address} from the board), topic {self.topic}"


@contextlib.contextmanager
def uplink_endpoint(board: Board, config: UplinkConfig | None, workdir: Path) -> Iterator[UplinkEndpoint]:
    """The lab's broker when `config` names one; else mosquitto on this host for the block, listening on every
    interface so the board reaches it at `harness-host` or, where that name is unknown, at the address its SSH
    session comes from."""
    topic = (config or UplinkConfig(host=HARNESS_HOST)).topic_for(board.name)
    if config is not None:
        yield UplinkEndpoint(config.host, board_address(board, config.host), config.port, (config.host, config.port),
                             topic, started_here=False)
        return
    with HostBroker(workdir, listen="0.0.0.0") as broker:
        try:
            host, address = HARNESS_HOST, board_address(board, HARNESS_HOST)
        except HarnessError:  # the board does not know the name: the address its SSH session comes from
            host = address = controller_address(board)
        yield UplinkEndpoint(host, address, broker.port, ("127.0.0.1", broker.port), topic, started_here=True)

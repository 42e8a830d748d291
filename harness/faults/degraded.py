"""Degraded link: netem on the board where its kernel has it, else the relay on the harness host. Which one is
known once it is applied (`method`, and `why` netem was not used), and the results say so."""

from __future__ import annotations

from harness.board import Board
from harness.faults.base import Fault, FaultUnavailable, controller_address
from harness.faults.netem import Netem
from harness.faults.relay import LinkShape
from harness.faults.relayed_link import RelayedLink


class DegradedLink:
    """The uplink at `address`:`port` shaped by `shape`; `upstream` is the broker as this host reaches it."""

    def __init__(self, board: Board, address: str, port: int, shape: LinkShape, *, upstream: tuple[str, int]) -> None:
        self.board, self.address, self.port, self.shape, self.upstream = board, address, port, shape, upstream
        self.chosen: Fault | None = None
        self.why = ""
        self.effect = "degraded"

    @property
    def method(self) -> str:
        return self.chosen.method if self.chosen is not None else "netem or relay"

    def describe(self) -> str:
        if self.chosen is not None:
            return self.chosen.describe()
        return f"uplink {self.address}:{self.port} degraded: {self.shape.describe()}"

    def apply(self) -> None:
        if self.chosen is None:
            try:
                netem = Netem(self.board, self.address, self.port, self.shape)
                netem.apply()
                self.chosen = netem
                return
            except FaultUnavailable as exc:
                self.why = str(exc)
            self.chosen = RelayedLink(self.board, self.address, self.port, self.shape,
                                      relay_address=controller_address(self.board), upstream=self.upstream)
        self.chosen.apply()

    def remove(self) -> None:
        if self.chosen is not None:
            self.chosen.remove()

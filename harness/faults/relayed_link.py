"""Degraded link through a TCP relay on the harness host, for boards whose kernel has no netem: the board's
connections to the uplink are redirected (iptables DNAT, in a nat chain of our own) to the relay, which adds
latency, caps bandwidth and resets connections, then forwards to the broker. The module keeps its
configuration; its open connection is reset once so that it reconnects through the relay."""

from __future__ import annotations

from harness.board import Board
from harness.faults.base import require_tool
from harness.faults.relay import LinkShape, TcpRelay

CHAIN = "JETSON_HIL_RELAY"

_REMOVE = (f"iptables -t nat -D OUTPUT -j {CHAIN} 2>/dev/null; iptables -t nat -F {CHAIN} 2>/dev/null; "
           f"iptables -t nat -X {CHAIN} 2>/dev/null; iptables -D OUTPUT -j {CHAIN} 2>/dev/null; "
           f"iptables -F {CHAIN} 2>/dev/null; iptables -X {CHAIN} 2>/dev/null; true")


class RelayedLink:
    """Board → relay (on this host, `relay_address` as the board reaches it) → broker at `upstream` from here."""

    method = "relay"
    effect = "degraded"

    def __init__(self, board: Board, address: str, port: int, shape: LinkShape, *, relay_address: str,
                 upstream: tuple[str, int]) -> None:
        self.board, self.address, self.port, self.shape = board, address, port, shape
        self.relay_address = relay_address
        require_tool(board, "iptables", "redirecting the uplink through the relay")
        self.upstream = upstream
        self.relay: TcpRelay | None = None

    def describe(self) -> str:
        return f"uplink {self.address}:{self.port} degraded by a relay on the harness host: {self.shape.describe()}"

    def apply(self) -> None:
        self.relay = TcpRelay(self.upstream, self.shape).start()
        target = f"{self.relay_address}:{self.relay.port}"
        match = f"-p tcp -d {self.address} --dport {self.port}"
        script = (f"iptables -t nat -N {CHAIN} 2>/dev/null || iptables -t nat -F {CHAIN}; "
                  f"iptables -t nat -A {CHAIN} {match} -j DNAT --to-destination {target} && "
                  f"{{ iptables -t nat -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -t nat -I OUTPUT 1 -j {CHAIN}; }} "
                  # new connections are NATed before the filter table sees them: this resets only the old one
                  f"&& {{ iptables -N {CHAIN} 2>/dev/null || iptables -F {CHAIN}; }} && "
                  f"iptables -A {CHAIN} {match} -j REJECT --reject-with tcp-reset && "
                  f"{{ iptables -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -I OUTPUT 1 -j {CHAIN}; }}")
        try:
            self.board.state.change(self.describe(), _REMOVE,
                                    lambda: self.board.run_root(script, "redirecting the uplink to the relay"))
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        try:
            self.board.state.revert(_REMOVE)
        finally:
            if self.relay is not None:  # the module's relayed connection ends here; it reconnects directly
                self.relay.stop()
                self.relay = None

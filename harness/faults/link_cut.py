"""Link cut: the board drops every packet to and from the uplink's host and port (a pulled cable, for that
service only). A chain of our own in iptables' filter table, so SSH and everything else stay untouched, and
removing it cannot disturb anybody else's rules."""

from __future__ import annotations

from harness.board import Board
from harness.faults.base import require_tool

CHAIN = "JETSON_HIL_UPLINK"

_REMOVE = (f"iptables -D OUTPUT -j {CHAIN} 2>/dev/null; iptables -D INPUT -j {CHAIN} 2>/dev/null; "
           f"iptables -F {CHAIN} 2>/dev/null; iptables -X {CHAIN} 2>/dev/null; true")


class LinkCut:
    """Drop tcp to `address`:`port` and its replies, both directions, on `board`."""

    method = "iptables"
    effect = "down"

    def __init__(self, board: Board, address: str, port: int) -> None:
        self.board, self.address, self.port = board, address, port
        require_tool(board, "iptables", "cutting the uplink")

    def describe(self) -> str:
        return f"uplink {self.address}:{self.port} cut (iptables, both directions)"

    def apply(self) -> None:
        script = (f"iptables -N {CHAIN} 2>/dev/null || iptables -F {CHAIN}; "
                  f"iptables -A {CHAIN} -p tcp -d {self.address} --dport {self.port} -j DROP && "
                  f"iptables -A {CHAIN} -p tcp -s {self.address} --sport {self.port} -j DROP && "
                  f"{{ iptables -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -I OUTPUT 1 -j {CHAIN}; }} && "
                  f"{{ iptables -C INPUT -j {CHAIN} 2>/dev/null || iptables -I INPUT 1 -j {CHAIN}; }}")
        self.board.state.change(self.describe(), _REMOVE, lambda: self.board.run_root(script, "cutting the uplink"))

    def remove(self) -> None:
        self.board.state.revert(_REMOVE)


def rules(board: Board) -> str:
    """Our iptables rules on the board now (filter and nat), empty when none: what teardown must leave."""
    return board.run_root(f"iptables -S 2>/dev/null | grep {CHAIN}; iptables -t nat -S 2>/dev/null | grep {CHAIN}; "
                           "true", "listing the uplink fault rules").strip()

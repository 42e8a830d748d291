"""Did every message the module produced reach the broker? Expected and actual streams merged by (run id, seq).

Microsoft's CountingReport (Azure IoT Edge connectivity tests) passes a run with duplicates and tolerates
misordering; this verdict is stricter. After dedup by (run id, seq): nothing missing, nothing unexpected,
nothing out of order. Raw duplicates (QoS 1 is at-least-once) are a reported figure, not a failure. A message
the module dropped on purpose (its outbox was full: drop-oldest) is not missing, but every drop must be on the
module's own record, and that record must agree with its drop counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.uplink.collector import Received

#: how many missing, unexpected or misordered items a verdict names
SHOWN = 10


@dataclass(frozen=True)
class Produced:
    """The "expected" stream, as the module reports it (GET /uplink): seq ranges per run, and what it dropped."""

    runs: tuple[tuple[str, int, int], ...]  # (run id, first seq, last seq)
    dropped_ranges: tuple[tuple[int, int], ...] = ()
    dropped_count: int = 0  # the module's drop counter since the window began (read with the ranges)

    @property
    def last_seq(self) -> int:
        return max((last for _, _, last in self.runs), default=0)

    def expected(self, after: int, upto: int) -> dict[int, str]:
        """seq -> run id for every seq in (after, upto]."""
        keys: dict[int, str] = {}
        for run_id, first, last in self.runs:
            for seq in range(max(first, after + 1), min(last, upto) + 1):
                keys[seq] = run_id
        return keys

    def dropped(self, after: int, upto: int) -> set[int]:
        return {s for first, last in self.dropped_ranges for s in range(max(first, after + 1), min(last, upto) + 1)}


def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted seqs folded into inclusive (first, last) ranges."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def show_ranges(spans: Sequence[tuple[int, int]], limit: int = SHOWN) -> str:
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans[:limit])
    return text + (f" and {len(spans) - limit} more ranges" if len(spans) > limit else "")


@dataclass(frozen=True)
class Verdict:
    expected: int
    delivered: int
    duplicates: int
    misordered: int
    unexpected: int
    dropped: int  # seqs on the module's drop record in the window
    dropped_delivered: int  # of those, delivered anyway (in flight when the outbox dropped them)
    module_dropped: int  # the module's drop counter since the window began
    recorded_dropped: int  # its drop record over the same span (the window may end before the module's last seq)
    missing_ranges: tuple[tuple[int, int], ...] = ()
    misordered_seqs: tuple[int, ...] = field(default=())
    unexpected_items: tuple[str, ...] = field(default=())

    @property
    def missing(self) -> int:
        return sum(b - a + 1 for a, b in self.missing_ranges)

    @property
    def passed(self) -> bool:
        return (self.expected > 0 and self.missing == 0 and self.unexpected == 0 and self.misordered == 0
                and self.recorded_dropped == self.module_dropped)

    def describe(self) -> str:
        text = (f"expected {self.expected}, delivered {self.delivered}, missing {self.missing}, duplicates "
                f"{self.duplicates} (raw), misordered {self.misordered}, unexpected {self.unexpected}, dropped by "
                f"overflow {self.dropped} (module's count {self.module_dropped})")
        if self.missing:
            text += f"; missing seqs: {show_ranges(self.missing_ranges)}"
        if self.misordered:
            text += f"; out of order: {', '.join(map(str, self.misordered_seqs[:SHOWN]))}"
        if self.unexpected:
            text += f"; unexpected: {', '.join(self.unexpected_items[:SHOWN])}"
        if self.recorded_dropped != self.module_dropped:
            text += (f"; the module's drop record ({self.recorded_dropped}) and its drop counter "
                     f"({self.module_dropped}) disagree")
        if self.expected == 0:
            text += "; nothing was produced: the module did not run"
        return text


def judge(produced: Produced, actual: Sequence[Received], after: int, upto: int) -> Verdict:
    """The verdict over seqs (after, upto]; deliveries outside that window belong to other windows. `produced`
    may be read later than `upto` was: a drop of a seq in the window that happened after is then on its record
    (a full outbox keeps dropping until the link is back)."""
    expected = produced.expected(after, upto)
    dropped = produced.dropped(after, upto)
    seen: set[tuple[str | None, int | None]] = set()
    duplicates = 0
    highest = after
    misordered: list[int] = []
    unexpected: list[str] = []
    for item in actual:
        if item.seq is not None and not after < item.seq <= upto:
            continue
        key = (item.run_id, item.seq)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        if item.seq is None or expected.get(item.seq) != item.run_id:
            unexpected.append("unreadable message" if item.seq is None else f"{item.run_id}/{item.seq}")
            continue
        if item.seq < highest:
            misordered.append(item.seq)
        highest = max(highest, item.seq)
    delivered = {seq for run_id, seq in seen if seq is not None and expected.get(seq) == run_id}
    missing = set(expected) - delivered - dropped
    return Verdict(
        expected=len(expected), delivered=len(delivered), duplicates=duplicates, misordered=len(misordered),
        unexpected=len(unexpected), dropped=len(dropped & set(expected)), dropped_delivered=len(dropped & delivered),
        module_dropped=produced.dropped_count,
        recorded_dropped=len(produced.dropped(after, max(upto, produced.last_seq))),
        missing_ranges=tuple(ranges(missing)), misordered_seqs=tuple(misordered), unexpected_items=tuple(unexpected))

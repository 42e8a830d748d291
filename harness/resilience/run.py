"""One resilience case on a board: the link taken down and up on a schedule while the module keeps detecting,
then the verdict over everything it produced meanwhile, with the figures a lab asks for.

The window of a case is the module's seqs after the last one it had produced when the case started (its outbox
drained first) up to the last one at the end. Drain time is taken from the deliveries themselves: from the
moment the link came back until the last message produced before that moment was first delivered.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.board import Board
from harness.deploy import ModuleHandle
from harness.errors import HarnessError
from harness.faults import Fault
from harness.resilience.plan import Cycles
from harness.results.files import replace_atomically
from harness.uplink import Collector, Produced, Verdict, judge

SAMPLE_S = 0.5
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Sample:
    at: float
    frames: int | None = None
    depth: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What a case measured. FPS figures are the module's own frame counts over the time the link was up,
    resp. down or degraded ("offline"; intervals spanning a module restart are left out)."""

    verdict: Verdict
    seconds: float
    offline_s: float
    drain_s: tuple[float | None, ...]
    fps_online: float | None
    fps_offline: float | None
    outbox_peak: int
    uplink: dict = field(repr=False)
    method: str

    @property
    def fps_ratio(self) -> float | None:
        if not self.fps_online or self.fps_offline is None:
            return None
        return self.fps_offline / self.fps_online

    @property
    def drain_max_s(self) -> float | None:
        known = [d for d in self.drain_s if d is not None]
        return max(known) if known else None


class OutageRun:
    """Drives one case: `lead`, then `cycle`s of fault and recovery, then `finish` for the outcome."""

    def __init__(self, board: Board, handle: ModuleHandle, collector: Collector, fault: Fault, *,
                 timeline: Path, say: Callable[[str], None], drain_timeout_s: float = 120.0) -> None:
        self.board, self.handle, self.collector, self.fault = board, handle, collector, fault
        self.timeline_path, self.say, self.drain_timeout_s = timeline, say, drain_timeout_s
        self.events: list[tuple[float, str]] = []
        self.phases: list[tuple[str, float, float]] = []  # ("up" or the fault's effect, start, end)
        self.samples: list[Sample] = []
        self.restores: list[tuple[float, int]] = []  # (when the link came back, last seq produced before)
        self._faulted = False
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="resilience-sampler", daemon=True)
        self.started = time.time()
        ready = self._ready()
        self.after, self.dropped_before = int(ready["last_seq"]), int(ready["dropped"])
        self._sampler.start()

    # the schedule ------------------------------------------------------------------------------------
    def cycles(self, plan: Cycles, during_outage: Callable[[OutageRun, float], None] | None = None) -> None:
        """`plan.lead_s` up, then per cycle the fault for `offline_s` (with `during_outage(run, end)` called at
        its middle) and the link up for `online_s`."""
        self.hold("up", plan.lead_s)
        for index in range(plan.cycles):
            self.say(f"cycle {index + 1}/{plan.cycles}: {self.fault.describe()} for {plan.offline_s:g} s")
            self.down(plan.offline_s, during_outage)
            self.up(plan.online_s)

    def hold(self, kind: str, seconds: float) -> None:
        """Keep the link as it is for `seconds` (the scenario's timing), recorded as an `kind` phase."""
        start = time.time()
        self._stop.wait(seconds)
        self.phases.append((kind, start, time.time()))

    def down(self, seconds: float, during: Callable[[OutageRun, float], None] | None = None) -> None:
        start = time.time()
        self.fault.apply()
        self._faulted = True
        self.event(f"fault on: {self.fault.describe()}")
        end = start + seconds
        if during is not None:  # at the middle; the outage goes on for at least half its length after it, so
            self._stop.wait(seconds / 2)  # a restarted module or a rebooted board comes back into the outage
            during(self, end)
            end = max(end, time.time() + seconds / 2)
        self._stop.wait(max(0.0, end - time.time()))
        self.phases.append((self.fault.effect, start, time.time()))

    def up(self, seconds: float) -> None:
        last_seq = int(self.handle.api("/uplink")["last_seq"])
        self.restores.append((time.time(), last_seq))  # drain counts from here: removing the fault takes a moment
        self.fault.remove()
        self._faulted = False
        self.event("fault off: link up")
        self.hold("up", seconds)

    def wait_until(self, moment: float) -> None:
        """Let the case run on until `moment` (epoch s)."""
        self._stop.wait(max(0.0, moment - time.time()))

    def event(self, text: str) -> None:
        self.events.append((time.time(), text))

    # actions during an outage ---------------------------------------------------------------------------
    def kill_module(self) -> None:
        pid = self.handle.kill()
        self.event(f"module pid {pid} SIGKILLed")
        back = self._ready(drained=False)
        self.event(f"module back (run {back.get('run_id')})")

    def reboot_board(self) -> None:
        """Reboot the board mid-outage; the module must come back by itself. The cut is a network fault, so it
        is put back after the boot for the rest of the outage."""
        self._paused.set()
        try:
            self.event("board reboot")
            began = time.monotonic()
            self.board.reboot()
            self.handle.close()  # the tunnel died with the old connection
            self.event(f"board back after {time.monotonic() - began:.1f} s")
            if self._faulted:
                self.fault.apply()
                self.event(f"fault on again: {self.fault.describe()}")
            back = self._ready(drained=False)
            self.event(f"module back by itself (run {back.get('run_id')})")
        finally:
            self._paused.clear()

    # the outcome -----------------------------------------------------------------------------------------
    def finish(self) -> Outcome:
        """Link up, wait (bounded) for every produced message to arrive, judge, write the timeline."""
        try:
            if self._faulted:
                self.up(0.0)
            upto = int(self.handle.api("/uplink")["last_seq"])
            deadline = time.monotonic() + self.drain_timeout_s
            while True:  # read again until all arrived: a full outbox keeps dropping the oldest until it drains
                uplink = self.handle.api("/uplink")
                produced = self._produced(uplink)
                dropped = produced.dropped(self.after, upto)
                wanted = {(s, r) for s, r in produced.expected(self.after, upto).items() if s not in dropped}
                if self._all_arrived(wanted) or time.monotonic() >= deadline:
                    break
                self._stop.wait(0.5)
            verdict = judge(produced, self.collector.received(), self.after, upto)
            self.event(f"verdict: {verdict.describe()}")
            return Outcome(verdict=verdict, seconds=time.time() - self.started,
                           offline_s=sum(e - s for k, s, e in self.phases if k != "up"),
                           drain_s=tuple(self._drain(t, seq, wanted) for t, seq in self.restores),
                           fps_online=self._fps(online=True), fps_offline=self._fps(online=False),
                           outbox_peak=max((s.depth for s in self.samples if s.depth is not None), default=0),
                           uplink=uplink, method=self.fault.method)
        finally:
            self._stop.set()
            self._sampler.join(10)
            self.write_timeline()

    def abort(self) -> None:
        """The case failed on the way: the fault off (the board state would undo it anyway), sampler stopped, the
        timeline written with what it had."""
        self._stop.set()
        try:
            if self._faulted:
                self.fault.remove()
        finally:
            self._sampler.join(10)
            self.write_timeline()

    # internals ---------------------------------------------------------------------------------------------
    def _produced(self, uplink: dict) -> Produced:
        return Produced(runs=tuple((r["run_id"], int(r["first_seq"]), int(r["last_seq"])) for r in uplink["runs"]),
                        dropped_ranges=tuple((int(a), int(b)) for a, b in uplink["dropped_ranges"]),
                        dropped_count=int(uplink["dropped"]) - self.dropped_before)

    def _ready(self, drained: bool = True) -> dict:
        """Wait (bounded) for the module to answer, its pipeline running and, with `drained`, its backlog sent."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                health = self.handle.api("/health", timeout=5)
                uplink = self.handle.api("/uplink", timeout=5)
            except HarnessError as exc:
                last = str(exc)
                self.handle.close()
            else:
                if health["status"] == "running" and (not drained or (uplink["connected"] and uplink["depth"] == 0)):
                    return dict(uplink, run_id=health["run_id"])
                last = (f"module {health['status']}, outbox {uplink['depth']} waiting, "
                        f"{'connected' if uplink['connected'] else 'not connected'}: {uplink.get('last_error')}")
            self._stop.wait(0.5)
        raise HarnessError(f"{self.board.name}: the module was not ready within {READY_TIMEOUT_S:.0f} s ({last})")

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            if self._paused.is_set():
                continue
            try:
                stats = self.handle.api("/stats", timeout=5)
                self.samples.append(Sample(time.time(), int(stats["frames"]), int(stats["uplink"]["depth"])))
            except (HarnessError, KeyError, ValueError):
                self.samples.append(Sample(time.time()))

    def _all_arrived(self, wanted: set[tuple[int, str]]) -> bool:
        return wanted <= {(seq, run) for run, seq in self.collector.delivered_keys()}

    def _drain(self, restored_at: float, last_seq: int, wanted: set[tuple[int, str]]) -> float | None:
        """Seconds from the link's return until the last message produced before it was first delivered."""
        needed = {key for key in wanted if key[0] <= last_seq}
        first: dict[tuple[int, str], float] = {}
        for item in self.collector.received():
            if item.seq is not None and item.run_id is not None:
                first.setdefault((item.seq, item.run_id), item.at)
        if not needed <= set(first):
            return None
        return max(0.0, max((first[k] for k in needed), default=restored_at) - restored_at)

    def _fps(self, online: bool) -> float | None:
        frames = seconds = 0.0
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            if a.frames is None or b.frames is None or b.frames < a.frames:
                continue  # no answer, or the module restarted in between
            middle = (a.at + b.at) / 2
            if any((k == "up") == online and s <= middle < e for k, s, e in self.phases):
                frames += b.frames - a.frames
                seconds += b.at - a.at
        return frames / seconds if seconds else None

    def _rate(self, lo: float, hi: float) -> float | None:
        """Frames per second between the last samples before `lo` and before `hi` (None across a restart)."""
        before = [s for s in self.samples if s.at < lo and s.frames is not None][-1:]
        until = [s for s in self.samples if s.at < hi and s.frames is not None][-1:]
        if not before or not until or until[0].at <= before[0].at:
            return None
        a, b = before[0], until[0]
        assert a.frames is not None and b.frames is not None
        return (b.frames - a.frames) / (b.at - a.at) if b.frames >= a.frames else None

    def write_timeline(self) -> Path:
        """Per second of the case: link state, events, messages received (duplicates too), outbox depth, FPS."""
        end = max([time.time(), *(e for _, _, e in self.phases)])
        received = [r.at for r in self.collector.received() if r.at >= self.started]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["second", "link", "events", "received", "outbox_depth", "fps"])
        for second in range(int(end - self.started) + 1):
            lo, hi = self.started + second, self.started + second + 1
            link = next((k for k, s, e in self.phases if s <= lo < e), "")
            events = "; ".join(text for at, text in self.events if lo <= at < hi)
            inside = [s for s in self.samples if lo <= s.at < hi]
            depth = next((s.depth for s in reversed(inside) if s.depth is not None), None)
            fps = self._rate(lo, hi)
            writer.writerow([second, link, events, sum(lo <= t < hi for t in received),
                             "" if depth is None else depth, "" if fps is None else round(fps, 2)])
        return replace_atomically(self.timeline_path, out.getvalue())

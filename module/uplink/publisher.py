"""Publisher thread: drains the outbox into a sink in seq order and deletes what the sink acknowledged."""

import threading
import time
from typing import Any, Dict, List, Optional, Set

from module.uplink.outbox import Outbox
from module.uplink.sinks.base import Sink, SinkError, log


class Publisher:
    """Moves messages outbox -> sink on its own thread.

    Order: the publisher hands the sink each seq once, in increasing order (a cursor past the last seq handed over);
    the sink keeps them across reconnects (see :class:`Sink`), so nothing is resent out of order while this process
    lives. After a crash the new process starts its cursor at 0, so whatever was unacknowledged is sent again: that
    is the at-least-once edge, and consumers dedup by ``seq``.
    """

    def __init__(
        self, outbox: Outbox, sink: Sink, batch: int = 100, idle_s: float = 0.05, retry_s: float = 1.0
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.batch = batch
        self.idle_s = idle_s
        self.retry_s = retry_s
        self.sent = 0
        self.last_error: Optional[str] = None
        self._cursor = 0  # highest seq handed to the sink
        self._inflight: Set[int] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._thread = threading.Thread(target=self._run, name="uplink-publisher", daemon=True)
        sink.wakeup = self._wake.set

    def start(self) -> "Publisher":
        self._thread.start()
        return self

    def notify(self) -> None:
        """Optional: call after ``outbox.put`` to send at once instead of within ``idle_s``."""
        self._wake.set()

    def stats(self) -> Dict[str, Any]:
        return {
            "depth": self.outbox.depth(),
            "last_seq": self.outbox.last_seq,
            "inflight": len(self._inflight),
            "sent": self.sent,
            "acked": self.outbox.acked,
            "dropped": self.outbox.dropped,
            "connected": self.sink.connected,
            "last_error": self.last_error or self.sink.last_error,
        }

    def wait_drained(self, timeout: float) -> bool:
        """True once the outbox is empty; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.outbox.depth() > 0:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Keep draining for up to ``timeout`` s while the sink is connected, then close it. True if drained.

        What is left stays in the outbox for the next start. The sink's close adds its own bound (MQTT: ~6 s).
        """
        self._drain_until = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 10.0)
        return self.outbox.depth() == 0

    def _run(self) -> None:
        connected_sink = False
        while True:
            self._wake.clear()
            progressed = False
            try:
                if not connected_sink:
                    self.sink.connect()
                    connected_sink = True
                progressed = self._pump()
                self.last_error = None
            except SinkError as exc:
                self.last_error = str(exc)
            except Exception as exc:  # a dead publisher would silently stop the uplink: log and retry instead
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:
                    log.exception("uplink: publisher error, retrying every %.0fs", self.retry_s)
                self.last_error = error
            if self._stopping.is_set() and (
                self.outbox.depth() == 0 or not self.sink.connected or time.monotonic() >= self._drain_until
            ):
                break
            if not progressed:
                self._wake.wait(self.retry_s if self.last_error else self.idle_s)
        if connected_sink:
            try:
                self._pump_acks()
                self.sink.close()
                self._pump_acks()  # a file sink acknowledges its last batch on close
            except Exception:
                log.exception("uplink: closing the sink failed")

    def _pump_acks(self) -> bool:
        acked = self.sink.poll_acked()
        if acked:
            self.outbox.ack(acked)
            self._inflight.difference_update(acked)
        return bool(acked)

    def _pump(self) -> bool:
        """One round: take acks, send the next window. True if anything moved."""
        progressed = self._pump_acks()
        room = min(self.batch, self.sink.capacity())
        if room <= 0:
            return progressed
        rows = self.outbox.peek(room, after=self._cursor)
        if not rows:
            return progressed
        handed: List[int] = []
        try:
            for seq, payload in rows:
                self.sink.send(seq, payload)
                handed.append(seq)
        finally:
            self._hand_over(handed)
        return True

    def _hand_over(self, handed: List[int]) -> None:
        """Flush the batch; the sink owns it once that worked. On SinkError the cursor stays: it is sent again."""
        if not handed:
            return
        self.sink.flush()
        self._cursor = handed[-1]
        self._inflight.update(handed)
        self.sent += len(handed)

"""Degraded-link fault: a TCP relay that delays, throttles and periodically resets the board's connections.

Where the board's kernel has no ``tc netem``, the harness redirects the board's MQTT traffic to this relay on the
harness host, and the relay forwards it to the broker with the link's faults added in user space. Each relayed
connection runs four threads (a reader and a writer per direction): readers timestamp chunks as they arrive,
writers release them when they are due and pace them to the rate cap, so a slow direction never stalls the other.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["LinkShape", "TcpRelay"]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024  # most bytes one read takes from a socket
_MAX_QUEUED = 256 * 1024  # bytes a direction holds before it stops reading: backpressure instead of unbounded memory
_SLICE_S = 0.02  # a rate-capped direction writes at most this many seconds' worth of bytes at once
_IO_TIMEOUT_S = 0.25  # socket timeout: a safety net so a pump blocked in a send notices a closed link
_CONNECT_TIMEOUT_S = 3.0
_JOIN_TIMEOUT_S = 2.0  # stop() waits at most this long for all of the relay's threads together
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST instead of a FIN


@dataclass(frozen=True)
class LinkShape:
    """What the relay does to the traffic."""

    delay_ms: float = 0.0  # one-way delay added to every chunk, each direction
    jitter_ms: float = 0.0  # uniform +- jitter on that delay (order of bytes in a stream is always kept)
    rate_kbit: float | None = None  # bandwidth cap per direction per connection, kbit/s (None = unlimited)
    reset_every_s: float | None = None  # close every open connection with a TCP RST this often (None = never)

    def __post_init__(self) -> None:
        """Reject a shape that cannot be applied, so a typo in a suite fails at once rather than as odd timings."""
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"LinkShape.{name} must be a finite number >= 0, got {value!r}")
        for name in ("rate_kbit", "reset_every_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"LinkShape.{name} must be None or a finite number > 0, got {value!r}")

    def describe(self) -> str:
        """One line for reports and test ids, e.g. "delay 200±50 ms, 64 kbit/s, reset every 5 s"."""
        parts = []
        if self.delay_ms or self.jitter_ms:
            jitter = f"±{self.jitter_ms:g}" if self.jitter_ms else ""
            parts.append(f"delay {self.delay_ms:g}{jitter} ms")
        if self.rate_kbit is not None:
            parts.append(f"{self.rate_kbit:g} kbit/s")
        if self.reset_every_s is not None:
            parts.append(f"reset every {self.reset_every_s:g} s")
        return ", ".join(parts) or "no shaping"


class TcpRelay:
    """Listens for the board, connects each of its connections to ``upstream`` and shapes both directions."""

    def __init__(
        self, upstream: tuple[str, int], shape: LinkShape = LinkShape(), listen: tuple[str, int] = ("0.0.0.0", 0)
    ) -> None:
        self._upstream = upstream
        self._listen = listen
        self._shape = shape
        self._rng = random.Random()
        self._cond = threading.Condition()  # guards the fields below; wakes the reset thread on set_shape/stop
        self._listener: socket.socket | None = None
        self._port = 0
        self._name = "relay"
        self._started = False
        self._stopping = False
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None
        self._reset_epoch = 0.0
        self._stats = {"connections": 0, "refused": 0, "resets": 0, "bytes_up": 0, "bytes_down": 0}

    def __repr__(self) -> str:
        where = f":{self._port}" if self._started else "(not started)"
        return f"TcpRelay({where} -> {self._upstream[0]}:{self._upstream[1]}, {self._shape.describe()})"

    def start(self) -> TcpRelay:
        """Bind the listening socket and start accepting; returns self so ``TcpRelay(...).start()`` reads well."""
        with self._cond:
            if self._started:
                raise RuntimeError(f"{self!r}: start() called twice")
        family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
        listener = socket.create_server(self._listen, family=family, backlog=64)
        listener.settimeout(_IO_TIMEOUT_S)
        with self._cond:
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._name = f"relay:{self._port}"
            self._started = True
            self._reset_epoch = time.monotonic()
            self._accept_thread = self._spawn(self._accept_loop, "accept")
            self._spawn(self._reset_loop, "reset")
        log.debug("%r started", self)
        return self

    @property
    def port(self) -> int:
        """The port the relay listens on (the one the board's traffic is redirected to)."""
        if not self._started:
            raise RuntimeError("TcpRelay.port: call start() first")
        return self._port

    def set_shape(self, shape: LinkShape) -> None:
        """Change the shape mid-test: chunks read from now on get the new delay, the next write the new rate.

        A changed reset period starts counting from now, so the first reset comes one full period later.
        """
        if not isinstance(shape, LinkShape):
            raise TypeError(f"set_shape() wants a LinkShape, got {type(shape).__name__}")
        with self._cond:
            if shape.reset_every_s != self._shape.reset_every_s:
                self._reset_epoch = time.monotonic()
            self._shape = shape
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        """Counters since start(): connections accepted, refused by upstream, reset by the relay, bytes delivered."""
        with self._cond:
            return dict(self._stats)

    def stop(self) -> None:
        """Close the listener and every connection, and wait (bounded) for the relay's threads; safe to repeat."""
        with self._cond:
            if not self._started or self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            links = list(self._links)
            listener, accept_thread = self._listener, self._accept_thread
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() on Linux; the timeout covers the rest
            if accept_thread is not None:
                accept_thread.join(_JOIN_TIMEOUT_S)
            listener.close()
        for link in links:
            link.close(reset=False)
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            log.warning("%r: threads still running after stop(): %s", self, ", ".join(stuck))
        log.debug("%r stopped: %s", self, self._stats)

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], role: str, *args: object) -> threading.Thread:
        """Start a daemon thread named after the relay; the caller holds self._cond."""
        thread = threading.Thread(target=target, args=args, name=f"{self._name} {role}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        """Accept the board's connections; each one connects upstream in its own thread so accepting never waits."""
        listener = self._listener
        assert listener is not None
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                if self._stopping:
                    return
                continue
            except OSError as error:
                with self._cond:
                    if self._stopping:
                        return
                    log.warning("%r: accept failed (%s); retrying", self, error)
                    self._cond.wait(_IO_TIMEOUT_S)  # e.g. out of file descriptors: back off, don't spin
                continue
            with self._cond:
                if self._stopping:
                    client.close()
                    return
                self._stats["connections"] += 1
                number = self._stats["connections"]
                self._threads = [t for t in self._threads if t.is_alive()]
                self._spawn(self._connect, f"#{number} connect", client, number)

    def _connect(self, client: socket.socket, number: int) -> None:
        """Open the upstream side of one connection and start its pumps; a refused upstream resets the client."""
        try:
            upstream = socket.create_connection(self._upstream, timeout=_CONNECT_TIMEOUT_S)
        except OSError as error:
            log.debug("%r #%d: upstream %s:%d refused: %s", self, number, *self._upstream, error)
            with self._cond:
                self._stats["refused"] += 1
            _reset(client)  # the board sees its connection fail, as it would talking to the broker directly
            return
        for sock in (client, upstream):
            sock.settimeout(_IO_TIMEOUT_S)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the shaping is ours, not Nagle's
        with self._cond:
            if not self._stopping:
                link = _Link(self, number, client, upstream)
                self._links.add(link)
                for direction in link.directions:
                    self._spawn(direction.read_loop, f"#{number} {direction.name}-read")
                    self._spawn(direction.write_loop, f"#{number} {direction.name}-write")
                return
        client.close()
        upstream.close()

    def _reset_loop(self) -> None:
        """Every reset_every_s, reset every open connection (a flaky link drops all of them at once)."""
        while True:
            with self._cond:
                if self._stopping:
                    return
                period = self._shape.reset_every_s
                if period is None:
                    self._cond.wait()
                    continue
                remaining = self._reset_epoch + period - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._reset_epoch = time.monotonic()
                links = list(self._links)
            resets = sum(link.close(reset=True) for link in links)
            if resets:
                log.debug("%r: reset %d connection(s)", self, resets)
                with self._cond:
                    self._stats["resets"] += resets

    def _delay_s(self) -> float:
        """The delay for a chunk read now: delay ± uniform jitter, never negative."""
        shape = self._shape
        jitter = self._rng.uniform(-shape.jitter_ms, shape.jitter_ms) if shape.jitter_ms else 0.0
        return max(0.0, shape.delay_ms + jitter) / 1000.0

    def _count(self, key: str, amount: int) -> None:
        with self._cond:
            self._stats[key] += amount

    def _forget(self, link: _Link) -> None:
        with self._cond:
            self._links.discard(link)


class _Link:
    """One relayed connection: the board's socket, the upstream socket and the two directions between them."""

    def __init__(self, relay: TcpRelay, number: int, client: socket.socket, upstream: socket.socket) -> None:
        self.relay = relay
        self.number = number
        self.sockets = (client, upstream)
        self.cond = threading.Condition()  # guards the directions' queues and `closed`
        self.closed = False
        self.closed_event = threading.Event()  # lets a pacing writer wait interruptibly
        self.directions = (
            _Direction(self, client, upstream, "up", "bytes_up"),
            _Direction(self, upstream, client, "down", "bytes_down"),
        )
        self.running = 2 * len(self.directions)

    def close(self, reset: bool) -> bool:
        """Stop both directions; with ``reset`` the sockets close with a RST. False if it was already closed.

        Only shutdown(SHUT_RD) here, which wakes the blocked readers without sending anything; the last pump
        thread to leave closes the sockets, so no socket is closed under a thread still using it.
        """
        with self.cond:
            if self.closed:
                return False
            self.closed = True
            self.cond.notify_all()
        self.closed_event.set()
        for sock in self.sockets:
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        return True

    def thread_done(self) -> None:
        """Called by each pump thread on its way out; the last one closes the sockets."""
        with self.cond:
            self.running -= 1
            last = self.running == 0
        if last:
            for sock in self.sockets:
                sock.close()
            self.relay._forget(self)


class _Direction:
    """One direction of a link: the reader timestamps chunks, the writer releases them when due, at the rate cap."""

    def __init__(self, link: _Link, src: socket.socket, dst: socket.socket, name: str, counter: str) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self.name = name
        self.counter = counter
        self.queue: deque[tuple[float, bytes]] = deque()  # (due time, chunk); b"" is the source's EOF
        self.queued = 0
        self.last_due = 0.0  # jitter never lets a chunk overtake the one before it
        self.next_send = 0.0  # rate pacing: the earliest time the next slice may go

    def read_loop(self) -> None:
        link = self.link
        try:
            while True:
                try:
                    data = self.src.recv(_CHUNK)
                except TimeoutError:
                    if link.closed:
                        return
                    continue
                except OSError:
                    link.close(reset=True)  # the peer reset the connection: pass the reset on
                    return
                due = max(time.monotonic() + self.link.relay._delay_s(), self.last_due)
                with link.cond:
                    while data and self.queued >= _MAX_QUEUED and not link.closed:
                        link.cond.wait()
                    if link.closed:
                        return
                    self.queue.append((due, data))
                    self.queued += len(data)
                    self.last_due = due
                    link.cond.notify_all()
                if not data:
                    return
        finally:
            link.thread_done()

    def write_loop(self) -> None:
        link = self.link
        try:
            while True:
                with link.cond:
                    while True:
                        if link.closed:
                            return
                        if not self.queue:
                            link.cond.wait()
                            continue
                        wait = self.queue[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        link.cond.wait(wait)
                    _, data = self.queue.popleft()
                    self.queued -= len(data)
                    link.cond.notify_all()
                if not data:
                    # the source closed and all it sent before has been delivered: close the other side too
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    link.close(reset=False)
                    return
                if not self._send(data):
                    link.close(reset=True)  # no-op if the link was closed already; else the destination broke
                    return
        finally:
            link.thread_done()

    def _send(self, data: bytes) -> bool:
        """Write one chunk, paced to the current rate cap; False if the link closed or the destination failed."""
        relay = self.link.relay
        view = memoryview(data)
        while view:
            rate_kbit = relay._shape.rate_kbit
            if rate_kbit is None:
                size = len(view)
            else:
                bytes_per_s = rate_kbit * 1000.0 / 8.0
                size = max(1, min(len(view), int(bytes_per_s * _SLICE_S)))
                wait = self.next_send - time.monotonic()
                if wait > 0 and self.link.closed_event.wait(wait):
                    return False
            started = time.monotonic()
            sent = self._send_some(view[:size])
            if sent is None:
                return False
            if rate_kbit is not None:
                self.next_send = max(self.next_send, started) + sent / bytes_per_s
            relay._count(self.counter, sent)
            view = view[sent:]
        return True

    def _send_some(self, view: memoryview) -> int | None:
        """One send() that gives up when the link closes; None on close or error."""
        while not self.link.closed:
            try:
                return self.dst.send(view)
            except TimeoutError:
                continue
            except OSError:
                return None
        return None


def _reset(sock: socket.socket) -> None:
    """Close a socket with a RST rather than a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()

"""The degraded-link relay against real sockets on 127.0.0.1: what gets through, how late, how fast, how it breaks."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from harness.faults.relay import LinkShape, TcpRelay

HOST = "127.0.0.1"
WAIT_S = 3.0  # the longest any one wait in these tests may take before it counts as a failure

Handler = Callable[[socket.socket], None]


class Upstream:
    """A tiny server thread standing in for the broker: runs ``handler`` on each accepted connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server((HOST, 0))
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.conns: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, name="test-upstream-accept", daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # close() shut the listener down
            conn.settimeout(2 * WAIT_S)
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="test-upstream-conn", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handler(conn)
        conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        for conn in list(self.conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self.threads):
            thread.join(WAIT_S)
        self.listener.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Bounded wait for state another thread updates (the relay's counters)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.01)


def connect(relay: TcpRelay) -> socket.socket:
    sock = socket.create_connection((HOST, relay.port), timeout=WAIT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, message: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(message)
    assert recv_exactly(sock, len(message)) == message
    return time.monotonic() - started


def relay_threads(relay: TcpRelay) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"relay:{relay.port} ")]


@pytest.fixture
def make_upstream() -> Iterator[Callable[[Handler], Upstream]]:
    servers: list[Upstream] = []

    def make(handler: Handler) -> Upstream:
        servers.append(Upstream(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def echo_server(make_upstream: Callable[[Handler], Upstream]) -> Upstream:
    return make_upstream(echo)


@pytest.fixture
def make_relay() -> Iterator[Callable[..., TcpRelay]]:
    relays: list[TcpRelay] = []

    def make(upstream: tuple[str, int], shape: LinkShape | None = None) -> TcpRelay:
        relays.append(TcpRelay(upstream, shape or LinkShape(), listen=(HOST, 0)).start())
        return relays[-1]

    yield make
    for relay in relays:
        relay.stop()


@pytest.mark.parametrize(
    ("shape", "text"),
    [
        (LinkShape(), "no shaping"),
        (
            LinkShape(delay_ms=200, jitter_ms=50, rate_kbit=64, reset_every_s=5),
            "delay 200±50 ms, 64 kbit/s, reset every 5 s",
        ),
        (LinkShape(delay_ms=100), "delay 100 ms"),
        (LinkShape(jitter_ms=20), "delay 0±20 ms"),
        (LinkShape(rate_kbit=256), "256 kbit/s"),
        (LinkShape(reset_every_s=0.5), "reset every 0.5 s"),
    ],
)
def test_describe(shape: LinkShape, text: str) -> None:
    assert shape.describe() == text


@pytest.mark.parametrize(
    "kwargs",
    [{"delay_ms": -1}, {"jitter_ms": -0.5}, {"delay_ms": math.nan}, {"rate_kbit": 0}, {"reset_every_s": -1}],
)
def test_shape_rejects_impossible_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LinkShape(**kwargs)


def test_data_passes_unchanged_both_ways(echo_server: Upstream, make_relay: Callable[..., TcpRelay]) -> None:
    relay = make_relay(echo_server.address)
    payload = os.urandom(300_000)  # more than the socket buffers hold: sent from a thread while we read
    with connect(relay) as client:
        round_trip(client, b"hello")
        sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
        sender.start()
        assert recv_exactly(client, len(payload)) == payload
        sender.join(WAIT_S)
    total = len(payload) + 5
    wait_for(lambda: relay.stats()["bytes_down"] == total, f"bytes_down == {total} (stats {relay.stats()})")
    assert relay.stats() == {"connections": 1, "refused": 0, "resets": 0, "bytes_up": total, "bytes_down": total}


def test_delay_applies_each_way(echo_server: Upstream, make_relay: Callable[..., TcpRelay]) -> None:
    relay = make_relay(echo_server.address, LinkShape(delay_ms=100))
    with connect(relay) as client:
        elapsed = round_trip(client)
    assert 0.2 <= elapsed < 1.0, f"round trip through 2 x 100 ms took {elapsed:.3f} s"


def test_jitter_keeps_stream_order(echo_server: Upstream, make_relay: Callable[..., TcpRelay]) -> None:
    relay = make_relay(echo_server.address, LinkShape(delay_ms=10, jitter_ms=10))
    messages = [f"<{i}>".encode() for i in range(300)]
    with connect(relay) as client:
        for message in messages:
            client.sendall(message)  # separate segments, so the relay reads (and delays) many chunks
        expected = b"".join(messages)
        assert recv_exactly(client, len(expected)) == expected


def test_set_shape_takes_effect_at_once(echo_server: Upstream, make_relay: Callable[..., TcpRelay]) -> None:
    relay = make_relay(echo_server.address)
    with connect(relay) as client:
        before = round_trip(client)
        relay.set_shape(LinkShape(delay_ms=150))
        after = round_trip(client)
    assert before < 0.3 <= after < 1.5, f"round trip {before:.3f} s unshaped, {after:.3f} s at 2 x 150 ms"


def test_rate_cap_each_direction(
    make_upstream: Callable[[Handler], Upstream], make_relay: Callable[..., TcpRelay]
) -> None:
    size, rate_kbit = 64 * 1024, 256.0  # 2 s each way, both ways at once
    cap = rate_kbit * 1000 / 8
    up_payload, down_payload = os.urandom(size), os.urandom(size)
    upstream_got: dict[str, object] = {}
    upstream_done = threading.Event()

    def sink_and_source(conn: socket.socket) -> None:
        sender = threading.Thread(target=conn.sendall, args=(down_payload,), daemon=True)
        sender.start()
        upstream_got["data"] = recv_exactly(conn, size)
        upstream_got["at"] = time.monotonic()
        upstream_done.set()
        sender.join(WAIT_S)

    upstream = make_upstream(sink_and_source)
    relay = make_relay(upstream.address, LinkShape(rate_kbit=rate_kbit))
    started = time.monotonic()
    with connect(relay) as client:
        sender = threading.Thread(target=client.sendall, args=(up_payload,), daemon=True)
        sender.start()
        assert recv_exactly(client, size) == down_payload
        down_rate = size / (time.monotonic() - started)
        assert upstream_done.wait(WAIT_S), "upstream never received the client's bytes"
        sender.join(WAIT_S)
    assert upstream_got["data"] == up_payload
    up_rate = size / (float(upstream_got["at"]) - started)  # type: ignore[arg-type]
    for direction, rate in (("up", up_rate), ("down", down_rate)):
        assert 0.5 * cap <= rate <= 1.2 * cap, f"{direction}: {rate:.0f} B/s through a {cap:.0f} B/s cap"
    wait_for(lambda: relay.stats()["bytes_up"] == relay.stats()["bytes_down"] == size, "both byte counters at size")


def test_periodic_reset(echo_server: Upstream, make_relay: Callable[..., TcpRelay]) -> None:
    started = time.monotonic()
    relay = make_relay(echo_server.address, LinkShape(reset_every_s=0.5))
    with connect(relay) as client, pytest.raises(ConnectionResetError):
        round_trip(client)
        client.recv(1)  # nothing comes back: the only way out is the reset (or the socket timeout, a failure)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.5, f"reset seen {elapsed:.3f} s after start, period 0.5 s"
    wait_for(lambda: relay.stats()["resets"] >= 1, "reset counted")
    relay.set_shape(LinkShape())  # no more resets: the relay still takes new connections
    with connect(relay) as client:
        round_trip(client)
    assert relay.stats()["connections"] == 2


def test_refusing_upstream_closes_the_client(make_relay: Callable[..., TcpRelay]) -> None:
    with socket.socket() as nobody:  # bound but not listening: connecting to it is refused
        nobody.bind((HOST, 0))
        relay = make_relay(nobody.getsockname()[:2])
        with connect(relay) as client:
            try:
                data = client.recv(1)
            except ConnectionResetError:
                data = b""
        assert data == b""
    assert relay.stats()["connections"] == 1
    assert relay.stats()["refused"] == 1


def test_upstream_close_closes_the_client(
    make_upstream: Callable[[Handler], Upstream], make_relay: Callable[..., TcpRelay]
) -> None:
    upstream = make_upstream(lambda conn: conn.sendall(b"bye"))  # then the server closes
    relay = make_relay(upstream.address, LinkShape(delay_ms=50))
    with connect(relay) as client:
        assert recv_exactly(client, 3) == b"bye"  # data sent before the close still arrives, then the close
        assert client.recv(1) == b""


def test_client_close_closes_upstream(
    make_upstream: Callable[[Handler], Upstream], make_relay: Callable[..., TcpRelay]
) -> None:
    saw_eof = threading.Event()

    def echo_then_note_eof(conn: socket.socket) -> None:
        echo(conn)
        saw_eof.set()

    relay = make_relay(make_upstream(echo_then_note_eof).address)
    with connect(relay) as client:
        round_trip(client)
    assert saw_eof.wait(WAIT_S), "upstream never saw the client's close"
    idle = [f"relay:{relay.port} accept", f"relay:{relay.port} reset"]
    wait_for(lambda: sorted(relay_threads(relay)) == idle, "the link's threads to end")


def test_stop_closes_connections_and_returns(echo_server: Upstream, make_relay: Callable[..., TcpRelay]) -> None:
    relay = make_relay(echo_server.address, LinkShape(delay_ms=50, rate_kbit=64))
    with connect(relay) as client:
        round_trip(client)
        client.sendall(os.urandom(20_000))  # still queued and paced in the relay when it stops
        started = time.monotonic()
        relay.stop()
        took = time.monotonic() - started
        try:
            while client.recv(65536):
                pass
        except ConnectionResetError:
            pass
    assert took < 1.0, f"stop() took {took:.3f} s"
    assert relay_threads(relay) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, relay.port), timeout=WAIT_S).close()
    relay.stop()  # a second stop is harmless


def test_context_manager_and_lifecycle(echo_server: Upstream) -> None:
    relay = TcpRelay(echo_server.address, listen=(HOST, 0))
    with pytest.raises(RuntimeError):
        _ = relay.port
    with relay:
        assert relay.port > 0
        with pytest.raises(RuntimeError):
            relay.start()
        with connect(relay) as client:
            round_trip(client)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, relay.port), timeout=WAIT_S).close()

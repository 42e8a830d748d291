"""The "actual" stream: every message the uplink broker delivered to the harness, with its arrival time.

A QoS 1 subscriber with a persistent session (clean_session=False, a client id of its own), so a message the
broker holds while this subscriber reconnects is still delivered. Duplicates are kept: counting them is the
verdict's job.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.errors import HarnessError


@dataclass(frozen=True)
class Received:
    """One delivery: host arrival time (epoch s), the message's run id and seq (None when unreadable), whether
    the broker resent it (DUP), and the topic and decoded message (None when it is not JSON)."""

    at: float
    run_id: str | None
    seq: int | None
    redelivered: bool = False
    topic: str = ""
    message: Any = None


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _identify(message: Any) -> tuple[str | None, int | None]:
    try:
        return str(message["run_id"]), int(message["seq"])
    except (KeyError, TypeError, ValueError):
        return None, None


class Collector:
    """Subscribes to `topic` on host:port and records every message; `close()` ends the session."""

    def __init__(self, host: str, port: int, topic: str, timeout: float = 10.0) -> None:
        self.endpoint = f"{host}:{port}"
        self.topic = topic
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._subscribed = threading.Event()
        self._refused: str | None = None
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise HarnessError(f"uplink broker host {host!r} does not resolve here ({exc.strerror}): fix `uplink.host`"
                               " in the lab file") from None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=False,
                                   client_id=f"jetson-hil-collector-{uuid.uuid4().hex[:8]}")
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise HarnessError(f"uplink broker {self.endpoint} refused the connection ({exc.strerror or exc}): is it "
                               "running and is the port right?") from None
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            why = self._refused or f"no SUBACK within {timeout:g} s"
            raise HarnessError(f"uplink broker {self.endpoint}: cannot subscribe to {topic!r}: {why}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refused = f"the broker refused the session ({reason})"
            return
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        decoded = _decode(message.payload)
        run_id, seq = _identify(decoded)
        with self._lock:
            self._received.append(Received(time.time(), run_id, seq, bool(message.dup), message.topic, decoded))

    def received(self) -> list[Received]:
        """Everything delivered so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def delivered_keys(self) -> set[tuple[str | None, int | None]]:
        with self._lock:
            return {(r.run_id, r.seq) for r in self._received}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

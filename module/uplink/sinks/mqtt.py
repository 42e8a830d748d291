"""MQTT sink on paho-mqtt 2.x: QoS 1, acknowledged by PUBACK.

A link cut silently (a pulled cable, a dropped route) does not close the connection: TCP keeps retransmitting
with exponential backoff (up to 2 minutes between tries, about 15 minutes before it gives up), and once the link
is back the backlog waits for the next retry. So the socket gets TCP_USER_TIMEOUT (Linux): data unacknowledged
for ``user_timeout_s`` ends the connection, and paho reconnects on its own schedule (``retry_max_s``).

The session is clean (``clean_session=True``): persistence is the outbox's job. What paho keeps is its in-flight
window; after a reconnect paho resends those unacknowledged PUBLISHes itself (DUP flag) before we hand it anything
new, so the broker sees seqs in order. QoS 1 is at-least-once: a PUBLISH the broker got whose PUBACK was lost in a
disconnect is delivered twice; consumers dedup by ``seq`` (the tests count how often that happens).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from module.uplink.sinks.base import Sink, SinkError, log


class _Client(mqtt.Client):
    """paho's Client, remembering why the last connection attempt failed (its on_connect_fail does not say)."""

    last_connect_error = ""

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc.strerror or str(exc) or type(exc).__name__
            raise


class MqttSink(Sink):
    """Publishes to ``mqtt://host[:port]/topic`` with QoS 1; never blocks or raises on an unreachable broker."""

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        keepalive: int = 30,
        max_inflight: int = 100,
        retry_min_s: int = 1,
        retry_max_s: int = 10,
        connect_timeout_s: float = 5.0,
        user_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(url)
        topic = urllib.parse.unquote(parts.path.lstrip("/"))
        if parts.scheme != "mqtt" or not parts.hostname or not topic:
            raise ValueError(f"MQTT sink URL must look like mqtt://host[:port]/topic, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 1883
        self.topic = topic
        self.keepalive = keepalive
        self.max_inflight = max_inflight
        self.user_timeout_s = user_timeout_s
        self._retry = f"{retry_min_s}..{retry_max_s}s"
        self._client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"jetson-hil-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.reconnect_delay_set(min_delay=retry_min_s, max_delay=retry_max_s)
        self._client.connect_timeout = connect_timeout_s
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = self._on_socket_open
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # mid -> seq, sent and not yet PUBACKed
        self._early: set[int] = set()  # PUBACKs that beat send() recording the mid
        self._gate: set[int] = set()  # mids from before this connection: paho resends them first
        self._connected = False
        self._closing = False
        self._outage_logged = False

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        log.info("uplink: publishing to mqtt://%s/%s (QoS 1)", self.endpoint, self.topic)
        self._client.connect_async(self.host, self.port, self.keepalive)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected

    def capacity(self) -> int:
        with self._lock:
            if not self._connected or self._gate:
                return 0
            return max(0, self.max_inflight - len(self._inflight))

    def send(self, seq: int, payload: bytes) -> None:
        info = self._client.publish(self.topic, payload, qos=1)
        # NO_CONN: the link dropped just now; paho queued the message and resends it on reconnect.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.last_error = f"publish: {mqtt.error_string(info.rc)}"
            raise SinkError(self.last_error)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                acked = True
            else:
                self._inflight[info.mid] = seq
                acked = False
        if acked:
            self._add_acked([seq])

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect; unacknowledged messages stay in the outbox. Bounded by ~connect_timeout_s + 1 s in paho."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False

    # paho callbacks, on its network thread. paho holds its own message lock around on_publish, so these only take
    # self._lock, which send() never holds while calling into paho.

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; elsewhere TCP's own give-up applies
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.user_timeout_s * 1000))

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._outage(f"broker {self.endpoint} refused the connection ({reason})")
            return
        with self._lock:
            self._gate = set(self._inflight)
            self._connected = True
        self.last_error = None
        log.info(
            "uplink: connected to broker %s%s",
            self.endpoint,
            f"; resending {len(self._gate)} unacknowledged" if self._gate else "",
        )
        self._outage_logged = False
        self.wakeup()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._outage(f"broker {self.endpoint} unreachable ({self._client.last_connect_error or 'unknown error'})")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected = False
        if self._closing:
            return
        detail = "connection lost" if getattr(reason, "value", None) == 128 else str(reason)  # 128: paho's CONN_LOST
        self._outage(f"lost broker {self.endpoint} ({detail})")

    def _outage(self, error: str) -> None:
        """One warning per outage; the retries that follow log at debug level."""
        self.last_error = error
        if self._outage_logged:
            log.debug("uplink: %s", error)
            return
        self._outage_logged = True
        log.warning("uplink: %s; queueing to outbox, retrying every %s", error, self._retry)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._gate.discard(mid)
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
        if seq is not None:
            self._add_acked([seq])

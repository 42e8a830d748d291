"""MQTT sink on paho-mqtt 2.x or 1.6: QoS 1, acknowledged by PUBACK.

paho-mqtt 2 needs Python 3.7, so JetPack 4 (Python 3.6) gets 1.6.1, and azure-iot-device pins <2 too. The two
differ in how the client is made and in what its callbacks receive; ``_paho_client`` is the one place that knows.

A link cut silently (a pulled cable, a dropped route) does not close the connection: TCP keeps retransmitting
with exponential backoff (up to 2 minutes between tries, about 15 minutes before it gives up), and once the link
is back the backlog waits for the next retry. So the socket gets TCP_USER_TIMEOUT (Linux): data unacknowledged
for ``user_timeout_s`` ends the connection, and paho reconnects on its own schedule (``retry_max_s``).

The session is clean (``clean_session=True``): persistence is the outbox's job. What paho keeps is its in-flight
window; after a reconnect paho resends those unacknowledged PUBLISHes itself (DUP flag) before we hand it anything
new, so the broker sees seqs in order. QoS 1 is at-least-once: a PUBLISH the broker got whose PUBACK was lost in a
disconnect is delivered twice; consumers dedup by ``seq`` (the tests count how often that happens).
"""

import contextlib
import socket
import threading
import urllib.parse
import uuid
from typing import Any, Callable, Dict, Optional, Set

import paho.mqtt
import paho.mqtt.client as mqtt

from module.uplink.sinks.base import Sink, SinkError, log

try:  # paho-mqtt 2.x: the callbacks' signatures are chosen by an API version
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:  # paho-mqtt 1.x: one set of signatures, no API version
    CallbackAPIVersion = None

PAHO_VERSION = str(getattr(paho.mqtt, "__version__", "unknown"))


class _Client(mqtt.Client):
    """paho's Client, remembering why the last connection attempt failed (its on_connect_fail does not say)."""

    last_connect_error = ""

    def reconnect(self) -> int:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc.strerror or str(exc) or type(exc).__name__
            raise


def _paho_client(
    client_id: str,
    connect_timeout_s: float,
    on_connect: Callable[[Optional[str]], None],
    on_disconnect: Callable[[str], None],
    on_publish: Callable[[int], None],
) -> _Client:
    """A clean-session MQTT 3.1.1 client on paho 2.x or 1.x, its callbacks reporting the same on both.

    ``on_connect(refused)`` gets None when the broker accepted, else why it refused; ``on_disconnect(reason)`` gets
    "connection lost" when the link dropped, else paho's reason; ``on_publish(mid)`` gets the PUBACKed message id.
    """
    if CallbackAPIVersion is None:  # 1.x: Client(client_id, clean_session, userdata, protocol, transport)
        client = _Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
        client._connect_timeout = connect_timeout_s  # 1.x reads this private attribute; 2.x made it a property
        client.on_connect = lambda _client, _userdata, _flags, rc: on_connect(mqtt.connack_string(rc) if rc else None)
        client.on_disconnect = lambda _client, _userdata, rc: on_disconnect(
            "connection lost" if rc == mqtt.MQTT_ERR_CONN_LOST else mqtt.error_string(rc)
        )
        client.on_publish = lambda _client, _userdata, mid: on_publish(mid)
        return client
    client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    client.connect_timeout = connect_timeout_s
    client.on_connect = lambda _client, _userdata, _flags, reason, _properties: on_connect(
        str(reason) if reason.is_failure else None
    )
    # 2.x reports a dropped link as reason code 128 ("Unspecified error"), which says less than our words do
    client.on_disconnect = lambda _client, _userdata, _flags, reason, _properties: on_disconnect(
        "connection lost" if getattr(reason, "value", None) == 128 else str(reason)
    )
    client.on_publish = lambda _client, _userdata, mid, _reason, _properties: on_publish(mid)
    return client


class MqttSink(Sink):
    """Publishes to ``mqtt://host[:port]/topic`` with QoS 1; never blocks or raises on an unreachable broker."""

    def __init__(
        self,
        url: str,
        client_id: Optional[str] = None,
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
        self._client = _paho_client(
            client_id or f"jetson-hil-{uuid.uuid4().hex[:12]}",
            connect_timeout_s,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_publish=self._on_publish,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.reconnect_delay_set(min_delay=retry_min_s, max_delay=retry_max_s)
        self._client.on_connect_fail = self._on_connect_fail  # (client, userdata) on both paho versions
        self._client.on_socket_open = self._on_socket_open  # (client, userdata, sock) on both
        self._lock = threading.Lock()
        self._inflight: Dict[int, int] = {}  # mid -> seq, sent and not yet PUBACKed
        self._early: Set[int] = set()  # PUBACKs that beat send() recording the mid
        self._gate: Set[int] = set()  # mids from before this connection: paho resends them first
        self._connected = False
        self._closing = False
        self._outage_logged = False

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        log.info("uplink: publishing to mqtt://%s/%s (QoS 1, paho-mqtt %s)", self.endpoint, self.topic, PAHO_VERSION)
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
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
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

    def _on_connect(self, refused: Optional[str]) -> None:
        if refused is not None:
            self._outage(f"broker {self.endpoint} refused the connection ({refused})")
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

    def _on_disconnect(self, reason: str) -> None:
        self._connected = False
        if self._closing:
            return
        self._outage(f"lost broker {self.endpoint} ({reason})")

    def _outage(self, error: str) -> None:
        """One warning per outage; the retries that follow log at debug level."""
        self.last_error = error
        if self._outage_logged:
            log.debug("uplink: %s", error)
            return
        self._outage_logged = True
        log.warning("uplink: %s; queueing to outbox, retrying every %s", error, self._retry)

    def _on_publish(self, mid: int) -> None:
        with self._lock:
            self._gate.discard(mid)
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
        if seq is not None:
            self._add_acked([seq])

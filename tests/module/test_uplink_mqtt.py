"""Acceptance tests of the lossless uplink against a real mosquitto and a real producer process.

The producer is ``python -m module.uplink.demo`` (outbox + MqttSink + Publisher) in its own process, so SIGKILL is
real. Every test checks, on what a QoS 1 subscriber received: after dedup by seq, every expected seq arrived in
order with no gap; duplicates (QoS 1 is at-least-once) are counted and reported, and must stay within one
in-flight window.

The producer runs once on paho-mqtt 2.x (this venv's) and once on 1.6.1, which JetPack 4's Python 3.6 gets (paho 2
needs 3.7): azure-iot-device pins paho-mqtt<2, so the IoT Edge SDK's folder (``scripts/setup.sh`` installs it into
``.venv/iotedge-sdk``) first on the producer's ``PYTHONPATH`` brings 1.6.1; the producer's log names the paho
version its sink runs on, and the test checks it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.uplink.broker import MOSQUITTO
from harness.uplink.broker import HostBroker as Mosquitto
from harness.uplink.collector import Collector
from tests.ci import unavailable
from tests.sshd import wait_until

REPO = Path(__file__).resolve().parents[2]
#: azure-iot-device and what it pins, paho-mqtt 1.6.1 among them (also read by test_uplink_iotedge)
IOTEDGE_SDK = Path(os.environ.get("JETSON_HIL_IOTEDGE_SDK", REPO / ".venv" / "iotedge-sdk"))
OUTAGE_S = 20.0  # required by the acceptance criteria
MAX_INFLIGHT = 100  # MqttSink's default window: the most a reconnect or a restart can duplicate

pytestmark = pytest.mark.mqtt


class Paho:
    """The environment a producer process runs in, and the paho-mqtt version it imports there."""

    def __init__(self, name: str, pythonpath: Path | None, expected: str) -> None:
        self.env = dict(os.environ)
        if pythonpath is not None:
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
        probe = [sys.executable, "-c", "import paho.mqtt; print(paho.mqtt.__version__)"]
        found = subprocess.run(probe, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=30)
        self.version = found.stdout.strip()
        assert found.returncode == 0 and self.version.startswith(expected), (name, found.stdout, found.stderr)
        self.name = name


@pytest.fixture(scope="module", params=["paho-mqtt 2", "paho-mqtt 1.6"])
def paho(request: pytest.FixtureRequest) -> Paho:
    """paho-mqtt 2.x from this venv, or 1.6 from the IoT Edge SDK's folder first on PYTHONPATH."""
    if request.param == "paho-mqtt 2":
        return Paho(request.param, None, "2.")
    if not (IOTEDGE_SDK / "paho" / "mqtt").is_dir():
        unavailable(f"paho-mqtt 1.6 is not in {IOTEDGE_SDK} (scripts/setup.sh installs azure-iot-device there)")
    return Paho(request.param, IOTEDGE_SDK, "1.6.")


class Subscriber(Collector):
    """The harness's own collector (QoS 1, persistent session, duplicates kept) on the test broker, read the way
    these tests read it."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        super().__init__("127.0.0.1", broker.port, topic)

    @property
    def messages(self) -> list[Any]:
        return [r.message for r in self.received()]

    @property
    def topics(self) -> list[str]:
        return [r.topic for r in self.received()]

    @property
    def redelivered(self) -> int:
        """Copies the broker itself resent (DUP flag): its own QoS 1 leg to this subscriber."""
        return sum(r.redelivered for r in self.received())

    def seqs(self) -> list[int]:
        return [int(m["seq"]) for m in self.messages]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker, not yet started: tests decide when it is up."""
    if not os.access(MOSQUITTO, os.X_OK):
        unavailable("mosquitto not installed (apt-get install mosquitto)")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(workdir)
    yield broker
    broker.stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[[Mosquitto, str], Subscriber]]:
    made: list[Subscriber] = []

    def make(broker: Mosquitto, topic: str) -> Subscriber:
        made.append(Subscriber(broker, topic))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


class Producer:
    """``python -m module.uplink.demo`` as a subprocess; its JSON stats lines are followed on a reader thread."""

    def __init__(
        self, workdir: Path, paho: Paho, name: str, outbox: Path, url: str, count: int, rate: float, **opts: Any
    ) -> None:
        self.name = name
        self.paho = paho
        self.stderr = workdir / f"{name}.stderr"
        args = [
            sys.executable, "-m", "module.uplink.demo",
            "--outbox", str(outbox), "--sink", url, "--count", str(count), "--rate", str(rate),
            "--run-id", name, "--retry-max-s", "1", "--drain-timeout", "60", "--stats-interval", "0.05",
        ]  # fmt: skip
        for key, value in opts.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=err, env=paho.env)
        self.stats: dict[str, Any] = {}
        self.done: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._lock:
                self.stats = event
                if event["event"] == "done":
                    self.done = event

    def stat(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.stats)

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        def check() -> bool:
            if self.proc.poll() is not None and self.done is None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            stats = self.stat()
            return bool(stats) and predicate(stats)

        wait_until(check, timeout, f"{self.name}: {what}")
        return self.stat()

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the producer to exit after draining; its final stats."""
        self.proc.wait(timeout)
        self._reader.join(5)
        assert self.done is not None, f"{self.name} ended without a final report: {self.log()[-2000:]}"
        assert self.proc.returncode == 0, f"{self.name} exited with {self.proc.returncode}"
        # the sink says which paho it runs on: the one this test meant
        assert f"(QoS 1, paho-mqtt {self.paho.version})" in self.log(), self.log()[-2000:]
        return self.done

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@pytest.fixture
def producers(tmp_path: Path, paho: Paho) -> Iterator[Callable[..., Producer]]:
    """Starts producers on the paho-mqtt version the test runs with (each test runs on both)."""
    started: list[Producer] = []

    def start(name: str, outbox: Path, url: str, count: int, rate: float, **opts: Any) -> Producer:
        started.append(Producer(tmp_path, paho, name, outbox, url, count, rate, **opts))
        return started[-1]

    yield start
    for producer in started:
        if producer.proc.poll() is None:
            producer.kill()


def assert_delivered_in_order(sub: Subscriber, expected: list[int], timeout: float = 30.0) -> int:
    """Wait until every expected seq arrived; assert order after dedup by seq. Returns the duplicate count."""
    wanted = set(expected)
    wait_until(lambda: wanted <= set(sub.seqs()), timeout, f"{len(expected)} seqs at the subscriber")
    seqs = sub.seqs()
    firsts = list(dict.fromkeys(seqs))
    assert firsts == expected, f"order/gaps: first differences at {_first_diff(firsts, expected)}"
    duplicates = len(seqs) - len(firsts)
    repeated = sorted({seq for seq in seqs if seqs.count(seq) > 1})
    print(
        f"\nduplicates at the subscriber: {duplicates} of {len(seqs)} messages (seqs {repeated[:10]}; "
        f"broker redeliveries with DUP set: {sub.redelivered})"
    )
    assert duplicates <= MAX_INFLIGHT
    return duplicates


def _first_diff(got: list[int], want: list[int]) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"index {i}: got {got[i : i + 5]}, want {want[i : i + 5]}"
    return f"lengths {len(got)} vs {len(want)}"


def test_a_20s_broker_outage_loses_nothing(
    tmp_path: Path,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    producers: Callable[..., Producer],
    record_property: Callable[[str, object], None],
) -> None:
    count, rate = 1200, 50.0  # 24 s of production: it goes on across the outage and after it
    mosquitto.start()
    sub = subscriber_factory(mosquitto, "hil/outage")
    producer = producers("run-outage", tmp_path / "outbox.db", f"{mosquitto.url}/hil/outage", count, rate)
    wait_until(lambda: len(sub.seqs()) >= 50, 10, "first deliveries")
    mosquitto.stop()
    producer.wait(lambda s: not s["connected"], 10, "noticing the outage")
    time.sleep(OUTAGE_S)  # the outage itself, as long as the acceptance criteria say; nothing waits on it
    during = producer.stat()
    assert not during["connected"]
    assert during["depth"] >= 0.8 * OUTAGE_S * rate, during  # queued to disk meanwhile
    mosquitto.start()
    done = producer.finish(60)
    assert done["drained"] and done["depth"] == 0 and done["dropped"] == 0, done
    assert done["last_seq"] == count
    duplicates = assert_delivered_in_order(sub, list(range(1, count + 1)))
    record_property("duplicates", duplicates)
    assert {m["run_id"] for m in sub.messages} == {"run-outage"}
    assert all(m["frame_id"] == m["seq"] - 1 for m in sub.messages)


def test_sigkill_during_an_outage_loses_nothing(
    tmp_path: Path,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    producers: Callable[..., Producer],
    record_property: Callable[[str, object], None],
) -> None:
    outbox, url = tmp_path / "outbox.db", f"{mosquitto.url}/hil/kill"
    mosquitto.start()
    sub = subscriber_factory(mosquitto, "hil/kill")
    first = producers("run-a", outbox, url, 100_000, 50.0)
    wait_until(lambda: len(sub.seqs()) >= 25, 10, "first deliveries")
    mosquitto.stop()
    first.wait(lambda s: not s["connected"] and s["depth"] >= 50, 10, "queueing during the outage")
    first.kill()
    second = producers("run-b", outbox, url, 100, 100.0)  # same outbox, broker still down
    second.wait(lambda s: not s["connected"] and s["last_seq"] > 100, 10, "starting degraded on the old outbox")
    mosquitto.start()
    done = second.finish(60)
    assert done["drained"] and done["depth"] == 0, done
    total = done["last_seq"]
    duplicates = assert_delivered_in_order(sub, list(range(1, total + 1)))
    record_property("duplicates", duplicates)
    by_run: dict[str, list[int]] = {}
    for message in sub.messages:
        by_run.setdefault(message["run_id"], []).append(message["seq"])
    # The restarted process went on from the highest seq ever assigned, including puts the kill interrupted.
    assert sorted(set(by_run["run-b"])) == list(range(total - 99, total + 1))


def test_broker_unreachable_at_start(
    tmp_path: Path,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    producers: Callable[..., Producer],
    record_property: Callable[[str, object], None],
) -> None:
    mosquitto.start()
    sub = subscriber_factory(mosquitto, "hil/late")  # the subscriber's session outlives the broker restart
    mosquitto.stop()
    count = 150
    producer = producers("run-late", tmp_path / "outbox.db", f"{mosquitto.url}/hil/late", count, 50.0)
    unreachable = re.compile(
        rf"uplink: broker 127\.0\.0\.1:{mosquitto.port} unreachable \(Connection refused\); "
        r"queueing to outbox, retrying every 1\.\.1s"
    )
    wait_until(lambda: unreachable.search(producer.log()) is not None, 10, "the 'unreachable' log line")
    stats = producer.wait(lambda s: s["last_seq"] >= 50, 10, "putting while the broker is down")
    assert not stats["connected"] and stats["depth"] == stats["last_seq"] and stats["sent"] == 0, stats
    mosquitto.start()
    done = producer.finish(60)
    assert done["drained"] and done["depth"] == 0, done
    duplicates = assert_delivered_in_order(sub, list(range(1, count + 1)))
    record_property("duplicates", duplicates)
    assert len(unreachable.findall(producer.log())) == 1  # one clear line per outage, not one per retry


def test_overflow_drops_oldest_and_delivers_the_newest(
    tmp_path: Path,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    producers: Callable[..., Producer],
) -> None:
    mosquitto.start()
    sub = subscriber_factory(mosquitto, "hil/overflow")
    mosquitto.stop()
    count, bound = 200, 50
    producer = producers(
        "run-overflow", tmp_path / "outbox.db", f"{mosquitto.url}/hil/overflow", count, 400.0, max_messages=bound
    )
    full = producer.wait(lambda s: s["last_seq"] == count, 10, "all puts")
    assert (full["depth"], full["dropped"], full["sent"]) == (bound, count - bound, 0), full
    mosquitto.start()
    done = producer.finish(60)
    assert done["drained"] and done["dropped"] == count - bound, done
    assert_delivered_in_order(sub, list(range(count - bound + 1, count + 1)))
    assert min(sub.seqs()) == count - bound + 1


#: connects an MqttSink and prints the paho version, whether it connected and its socket's TCP_USER_TIMEOUT
USER_TIMEOUT_PROBE = """
import socket, sys, time
from module.uplink.sinks.mqtt import PAHO_VERSION, MqttSink
sink = MqttSink(sys.argv[1], user_timeout_s=7.5)
sink.connect()
deadline = time.monotonic() + 10
while not sink.connected and time.monotonic() < deadline:
    time.sleep(0.05)
option = sink._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) if sink.connected else None
sink.close()
print(PAHO_VERSION, sink.last_error, option)
"""


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
def test_a_silently_cut_link_is_given_up_on_in_user_timeout(mosquitto: Mosquitto, paho: Paho) -> None:
    """Without TCP_USER_TIMEOUT, TCP retransmits into a cut link with exponential backoff and the backlog waits
    for its next try once the link is back (the resilience suite measured 21.9 s of drain after a 30 s cut)."""
    mosquitto.start()
    probe = [sys.executable, "-c", USER_TIMEOUT_PROBE, f"{mosquitto.url}/hil/timeout"]
    result = subprocess.run(probe, env=paho.env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [paho.version, "None", "7500"], result.stdout + result.stderr

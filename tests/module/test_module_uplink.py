"""The whole module (not just its uplink) against a real mosquitto: a 20 s outage with a SIGKILL in it loses nothing.

The module runs as ``python -m module run`` with the synthetic camera; the broker is stopped for 20 s, the module
is SIGKILLed in the middle of the outage and started again on the same state folder; once the broker is back every
sequence number ever assigned reaches the subscriber, in order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.module.test_uplink_mqtt import (
    OUTAGE_S,
    REPO,
    Mosquitto,
    Subscriber,
    assert_delivered_in_order,
    mosquitto,
    subscriber_factory,
    wait_until,
)
from tests.sshd import free_port

pytestmark = pytest.mark.mqtt
__all__ = ["mosquitto", "subscriber_factory"]  # fixtures used by name below


class Module:
    """``python -m module run`` in its own process, its control API polled over HTTP."""

    def __init__(self, tmp: Path, url: str, run_id: str, state: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = tmp / f"{run_id}.log"
        self.log = self.log_path.open("wb")
        command = [sys.executable, "-m", "module", "run", "--source", "synthetic", "--fps-cap", "25",
                   "--sink", url, "--state-dir", str(state), "--api-port", str(self.port), "--run-id", run_id]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stats(self) -> dict:
        try:
            return self.get("/stats")
        except OSError:
            return {}

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
            return json.loads(response.read())

    def pause(self) -> None:
        """Stop producing (POST /stop) so that the last sequence number stays put."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/stop", method="POST")
        with urllib.request.urlopen(request, timeout=15) as response:
            assert json.loads(response.read())["status"] == "stopped"

    def uplink(self, key: str, default: object = None) -> object:
        return self.stats().get("uplink", {}).get(key, default)

    def drain(self, what: str, reconnect_s: float) -> object:
        """Once the uplink is back: stop producing, wait for an empty outbox, return the last sequence number."""
        wait_until(lambda: self.uplink("connected") is True, reconnect_s, f"reconnecting to {what}")
        self.pause()
        wait_until(lambda: self.uplink("depth") == 0, 60, f"the outbox drained into {what}")
        return self.uplink("last_seq")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.log.close()
        return code


def test_module_loses_nothing_across_a_broker_outage_and_a_sigkill(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    url, state = f"{mosquitto.url}/hil/module", tmp_path / "state"
    mosquitto.start()
    sub = subscriber_factory(mosquitto, "hil/module")
    first = Module(tmp_path, url, "run-a", state)
    wait_until(lambda: len(sub.seqs()) >= 25, 60, "first deliveries from the module")
    mosquitto.stop()
    outage_started = time.monotonic()
    wait_until(lambda: first.uplink("connected") is False and first.uplink("depth", 0) >= 25, 15, "queueing")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-outage, nothing flushed, nothing said
    second = Module(tmp_path, url, "run-b", state)
    wait_until(lambda: second.stats().get("frames", 0) >= 25 and second.uplink("connected") is False, 30,
               "the restarted module running degraded on the same outbox")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))  # the rest of the 20 s outage
    mosquitto.start()
    total = second.drain("the broker", reconnect_s=30)
    assert isinstance(total, int) and total > 50
    assert second.stop() == 0
    assert_delivered_in_order(sub, list(range(1, total + 1)))
    runs = {m["run_id"] for m in sub.messages}
    assert runs == {"run-a", "run-b"}

"""A real mosquitto on the harness host, for a session whose lab names no uplink broker (and for the tests).

Persistence is on, in the broker's own folder, so a subscriber's persistent session and its queue survive a
broker restart; the queue is unbounded, so a burst after an outage is never dropped by the broker itself (that
would be a loss the module under test did not cause).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness.errors import HarnessError

#: Debian package "mosquitto" (scripts/setup.sh installs it)
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class HostBroker:
    """mosquitto listening on `listen`:port, started and stopped (also again) by its owner."""

    def __init__(self, workdir: Path, listen: str = "127.0.0.1", port: int | None = None,
                 extra_config: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.listen = listen
        self.port = port or free_port(listen if listen != "0.0.0.0" else "")
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {listen}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir}/",
            "max_queued_messages 0",
            "log_type error",
            "log_type warning",
            "log_type notice",
            *extra_config,
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to the 'mosquitto' user, which cannot write workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt://host:port as this host reaches it (no topic)."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> HostBroker:
        if self.running:
            return self
        if not os.access(MOSQUITTO, os.X_OK):
            raise HarnessError(f"mosquitto is not installed on this host ({MOSQUITTO}): apt-get install mosquitto, "
                               "or name the lab's broker under `uplink:` in lab.yaml")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                self._proc = None
                raise HarnessError(f"mosquitto exited at start ({tail[0]}); see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise HarnessError(f"mosquitto did not listen on port {self.port} within {timeout:g} s; "
                                       f"see {self.log}") from None
                time.sleep(0.02)  # polling a port another process opens

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: a clean shutdown, which is also when mosquitto saves its persistence file."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)
        self._proc = None

    def __enter__(self) -> HostBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

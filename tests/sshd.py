"""A real OpenSSH sshd on 127.0.0.1 for transport tests: own host key, own authorized key, own port.

Testing against the real server catches what a mock of paramiko cannot: host-key negotiation,
known_hosts notation for non-22 ports, pty hang-up, SFTP and direct-tcpip as OpenSSH does them.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.transport.ssh import SshTransport
from tests.ci import unavailable

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def keygen(path: Path) -> Path:
    """Make an unencrypted ed25519 key pair at `path` (+ .pub)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jetson-hil-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Bounded poll for something another process does; True once it holds, False at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """poll_until for tests: fails naming `what` when it never happens."""
    if not poll_until(condition, timeout):
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def unique_sleep() -> str:
    """A long `sleep` command whose command line no other process has, to find it with pgrep."""
    return f"sleep 1000.{uuid.uuid4().int % 10**9:09d}"


def process_running(command_line: str) -> bool:
    """Whether a live process has exactly this command line (the "board" is this machine)."""
    found = subprocess.run(["pgrep", "-f", f"^{re.escape(command_line)}$"], capture_output=True)
    return found.returncode == 0


@dataclass
class SshdServer:
    """One sshd process; stop() also ends its open connections, as a board reboot does."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    user: str = field(default_factory=getpass.getuser)
    _proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.key_file = keygen(self.workdir / "client_ed25519")
        host_key = keygen(self.workdir / "host_ed25519")
        self.authorized_keys = self.workdir / "authorized_keys"
        self.authorized_keys.write_text(self.key_file.with_suffix(".pub").read_text())
        key_type, key_b64 = host_key.with_suffix(".pub").read_text().split()[:2]
        self.host_key_line = f"[{self.host}]:{self.port} {key_type} {key_b64}"
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.write_text(self.host_key_line + "\n")
        self.log = self.workdir / "sshd.log"
        self.config = self.workdir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.host}:{self.port}",
                    f"HostKey {host_key}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "Subsystem sftp internal-sftp",
                    "AllowTcpForwarding yes",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def start(self) -> None:
        """Start sshd and return once its port accepts connections."""
        with self.log.open("ab") as log:
            proc = self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        ready = poll_until(lambda: self._accepts() or proc.poll() is not None, READY_TIMEOUT_S)
        if not ready or proc.poll() is not None:
            self.stop()
            raise RuntimeError(
                f"sshd did not start listening on {self.host}:{self.port} within {READY_TIMEOUT_S:g}s; "
                f"its stderr:\n{self.log.read_text()}"
            )

    def _accepts(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
            return True
        return False

    def stop(self) -> None:
        """Stop the listener and every connection it spawned (sshd puts those in their own sessions)."""
        if self._proc is None:
            return
        children = _descendants(self._proc.pid)
        self._proc.terminate()
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same keys, like a board rebooting."""
        self.stop()
        self.start()

    def transport(self, **overrides: object) -> SshTransport:
        """An SshTransport for this server; keyword arguments replace the defaults."""
        options: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": self.key_file,
            "known_hosts": self.known_hosts,
            "connect_timeout": 5.0,
        }
        options.update(overrides)
        return SshTransport(**options)  # type: ignore[arg-type]


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, read from /proc."""
    parents: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # the field after the parenthesised command name is the state, then the parent pid
            ppid = int(status.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(status.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def start_sshd(workdir: Path) -> SshdServer:
    """Start a server in `workdir`, or skip the test (fail it in CI) when this machine cannot run one."""
    if not SSHD.exists():
        unavailable(f"{SSHD} not found: install the Debian package openssh-server")
    try:
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    except PermissionError:
        unavailable(f"sshd needs {PRIVSEP_DIR}, which this user cannot create")
    server = SshdServer(workdir)
    server.start()
    return server


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """One sshd for the whole session; tests that stop it must start it again (see `own_sshd`)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[SshdServer]:
    """A private sshd for tests that stop or restart the server, so they cannot disturb others."""
    server = start_sshd(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def ssh_transport(sshd_server: SshdServer) -> Iterator[SshTransport]:
    """A connected transport to the session sshd, closed after the test."""
    transport = sshd_server.transport()
    transport.connect()
    yield transport
    transport.close()

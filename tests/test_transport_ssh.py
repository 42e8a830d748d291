"""SshTransport against a real OpenSSH sshd on 127.0.0.1 (the "board" is this machine)."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, HostKeyError, TransportError
from harness.transport.ssh import SshTransport
from tests.sshd import SshdServer, free_port, keygen, process_running, unique_sleep, wait_until

pytestmark = pytest.mark.sshd


# -- run ------------------------------------------------------------------------------------------


def test_run_replaces_undecodable_bytes(ssh_transport: SshTransport) -> None:
    assert ssh_transport.run(r"printf 'ok\377'").stdout == "ok\ufffd"


def test_big_output_on_both_pipes_does_not_deadlock(ssh_transport: SshTransport) -> None:
    """A reader that drained stdout to the end before touching stderr would hang here: the command
    blocks on a full stderr window and never closes stdout."""
    result = ssh_transport.run(
        "head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 5000000 /dev/zero | tr '\\0' o", timeout=30
    )
    assert result.stdout == "o" * 5_000_000
    assert result.stderr == "e" * 3_000_000


def test_big_stdin_while_reading_output_does_not_deadlock(ssh_transport: SshTransport) -> None:
    """cat echoes while we still send: stdin has to be fed concurrently with reading."""
    data = "0123456789abcdef" * 300_000  # 4.8 MB
    assert ssh_transport.run("cat", stdin=data, timeout=30).stdout == data


def test_timeout_raises_promptly_and_leaves_transport_usable(ssh_transport: SshTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"`sleep 30` on root@127\.0\.0\.1:\d+ did not finish within 1s"):
        ssh_transport.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 5
    assert ssh_transport.run("echo ok").stdout == "ok\n"


# -- stream ---------------------------------------------------------------------------------------


# -- files ----------------------------------------------------------------------------------------


def test_get_missing_file_names_remote_path(ssh_transport: SshTransport, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "file"
    with pytest.raises(TransportError, match=str(missing)):
        ssh_transport.get(str(missing), tmp_path / "out")


# -- forwarding -----------------------------------------------------------------------------------


class _ReplyOnEof(socketserver.BaseRequestHandler):
    """Reads until the client half-closes, then answers: needs half-close passed through the tunnel."""

    def handle(self) -> None:
        received = b""
        while chunk := self.request.recv(65536):
            received += chunk
        self.request.sendall(b"got:" + received)


@pytest.fixture
def reply_server() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ReplyOnEof)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def _receive_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_forward_carries_two_concurrent_connections(ssh_transport: SshTransport, reply_server: int) -> None:
    with ssh_transport.forward(reply_server) as local_port:
        assert local_port != reply_server
        first = socket.create_connection(("127.0.0.1", local_port), timeout=10)
        second = socket.create_connection(("127.0.0.1", local_port), timeout=10)
        with first, second:
            first.sendall(b"one")
            second.sendall(b"two" * 100_000)
            first.shutdown(socket.SHUT_WR)
            second.shutdown(socket.SHUT_WR)
            assert _receive_all(first) == b"got:one"
            assert _receive_all(second) == b"got:" + b"two" * 100_000
    assert [t.name for t in threading.enumerate() if t.name.startswith("forward-")] == []


# -- host keys ------------------------------------------------------------------------------------


def _other_host_key_line(sshd_server: SshdServer, tmp_path: Path) -> str:
    key_type, key_b64 = keygen(tmp_path / "other").with_suffix(".pub").read_text().split()[:2]
    return f"[{sshd_server.host}]:{sshd_server.port} {key_type} {key_b64}\n"


@pytest.mark.parametrize("trust_on_first_use", [False, True])
def test_changed_host_key_is_refused(sshd_server: SshdServer, tmp_path: Path, trust_on_first_use: bool) -> None:
    """Even trust-on-first-use never accepts a key that differs from the recorded one."""
    known_hosts = tmp_path / "known_hosts"
    recorded = _other_host_key_line(sshd_server, tmp_path)
    known_hosts.write_text(recorded)
    transport = sshd_server.transport(known_hosts=known_hosts, trust_on_first_use=trust_on_first_use)
    with pytest.raises(HostKeyError, match="CHANGED") as caught:
        transport.connect()
    assert str(known_hosts) in str(caught.value)
    assert not transport.is_connected
    assert known_hosts.read_text() == recorded


def test_unknown_host_key_is_refused_by_default(sshd_server: SshdServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    transport = sshd_server.transport(known_hosts=known_hosts)
    with pytest.raises(HostKeyError) as caught:
        transport.connect()
    message = str(caught.value)
    assert f"ssh-keyscan -p {sshd_server.port} {sshd_server.host} >> {known_hosts}" in message
    assert "trust_on_first_use" in message
    assert known_hosts.read_text() == ""


def test_trust_on_first_use_saves_key_for_later_connections(sshd_server: SshdServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "new-dir" / "known_hosts"
    with sshd_server.transport(known_hosts=known_hosts, trust_on_first_use=True) as transport:
        assert transport.run("echo ok").stdout == "ok\n"
    assert known_hosts.read_text() == sshd_server.host_key_line + "\n"
    with sshd_server.transport(known_hosts=known_hosts) as transport:
        assert transport.is_connected


# -- authentication and reachability --------------------------------------------------------------


def test_unauthorized_key_fails_without_revealing_it(
    sshd_server: SshdServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = keygen(tmp_path / "stranger")
    secret = key_file.read_text().splitlines()[1]  # first line of the private key body
    with pytest.raises(TransportError, match="authentication failed") as caught:
        sshd_server.transport(key_file=key_file).connect()
    assert type(caught.value) is TransportError
    for text in (str(caught.value), caplog.text):
        assert str(key_file) not in text
        assert secret not in text


def test_missing_key_file_fails_without_naming_it(sshd_server: SshdServer, tmp_path: Path) -> None:
    key_file = tmp_path / "secret-location" / "id_ed25519"
    with pytest.raises(TransportError, match="key file unreadable") as caught:
        sshd_server.transport(key_file=key_file).connect()
    assert "secret-location" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_connection_refused_fails_fast() -> None:
    port = free_port()
    transport = SshTransport("127.0.0.1", port=port, connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(TransportError, match=rf"cannot connect to root@127\.0\.0\.1:{port}: .*refused"):
        transport.connect()
    assert time.monotonic() - started < 2


def test_run_reconnects_after_sshd_restart(own_sshd: SshdServer) -> None:
    """A reboot drops the connection; the next command re-establishes it by itself."""
    with own_sshd.transport() as transport:
        assert transport.run("echo before").ok
        own_sshd.restart()
        assert transport.run("echo after").stdout == "after\n"


def test_reconnect_waits_for_server(own_sshd: SshdServer) -> None:
    with own_sshd.transport() as transport:
        own_sshd.restart()
        transport.reconnect(timeout=10)
        assert transport.is_connected
        assert transport.run("echo ok").stdout == "ok\n"


def test_reconnect_gives_up_after_timeout(own_sshd: SshdServer) -> None:
    with own_sshd.transport() as transport:
        own_sshd.stop()
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"not reachable after 3s: .*refused"):
            transport.reconnect(timeout=3)
        assert 3 <= time.monotonic() - started < 6
        with pytest.raises(TransportError, match="refused"):
            transport.run("echo never")


def test_a_command_whose_connection_breaks_is_killed_on_the_board(own_sshd: SshdServer) -> None:
    """sshd dies under a running command (a cut, a killed session): without a pty nothing hangs it up, so the
    transport kills it over the next connection instead of leaving it to skew what runs next."""
    sleep = unique_sleep()
    with own_sshd.transport() as transport:
        restarter = threading.Thread(target=lambda: (wait_until(lambda: process_running(sleep), 10, "the sleep"),
                                                     own_sshd.restart()))
        restarter.start()
        with pytest.raises(TransportError, match=r"connection to .* lost"):
            transport.run(sleep, timeout=60)
        restarter.join(20)
        wait_until(lambda: not process_running(sleep), 10, f"`{sleep}` killed after its connection broke")


def test_a_port_that_never_speaks_ssh_is_named_in_one_line() -> None:
    """A silent service on the port (a firewall that accepts, a wrong port): no paramiko session errors."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        transport = SshTransport("127.0.0.1", port, connect_timeout=1)
        with pytest.raises(TransportError) as refused:
            transport.connect()
    assert str(refused.value) == (f"cannot connect to root@127.0.0.1:{port}: port {port} accepted the connection but "
                                  "no SSH server answered within 1s (is it the board's SSH port?)")

"""SSH transport: the harness on a lab machine talking to a Jetson over the network (paramiko).

Host keys are verified against known_hosts by default: a board answering with an unknown key is
refused unless the inventory opts into trust-on-first-use, and a board whose key changed is always
refused. The private key file is never named or shown in logs or errors.

A board that rebooted (or whose sshd restarted) drops the connection; a command started on a dead
connection reconnects once and retries before failing, so callers need not track reboots for
single commands. `reconnect()` is the explicit, patient version for waiting out a reboot.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko

from harness.errors import CommandTimeout, HostKeyError, TransportError
from harness.transport.base import DEFAULT_TIMEOUT_S, CommandResult, StreamingCommand, Transport
from harness.transport.lines import LineSplitter

log = logging.getLogger(__name__)
# paramiko's transport thread logs every failed handshake with a traceback; the harness reports each failure
# itself, as one TransportError line
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)

#: errors that mean "the network or the SSH link failed", as opposed to a configuration problem
_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
_CHUNK = 65536
_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 10.0
_FORWARD_JOIN_S = 5.0
_EXIT_STATUS_WAIT_S = 2.0
#: what paramiko says when the peer never sent an SSH banner (a silent or non-SSH service on the port)
_NO_SSH_SERVER = frozenset({"No existing session", "Error reading SSH protocol banner"})


class SshTransport(Transport):
    """One SSH connection to one board; commands, SFTP and port forwards share it."""

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: str = "root",
        key_file: str | Path | None = None,
        known_hosts: str | Path | None = None,
        trust_on_first_use: bool = False,
        connect_timeout: float = 10.0,
        keepalive_s: float = 15.0,
        name: str | None = None,
        session: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self._key_file = Path(key_file) if key_file is not None else None
        self.known_hosts = Path(known_hosts) if known_hosts is not None else Path.home() / ".ssh/known_hosts"
        self.trust_on_first_use = trust_on_first_use
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.target = name or f"{user}@{host}:{port}"
        self.session = session or uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- connection -------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def connect(self) -> None:
        if self.is_connected:
            return
        self.close()
        try:
            self._open(self.connect_timeout)
        except _LINK_ERRORS as e:
            raise TransportError(f"cannot connect to {self.target}: {self._describe(e)}") from e

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(*_LINK_ERRORS):
                self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def duplicate(self) -> SshTransport:
        return SshTransport(self.host, self.port, self.user, self._key_file, self.known_hosts, self.trust_on_first_use,
                            self.connect_timeout, self.keepalive_s, self.target, self.session)

    def reconnect(self, timeout: float = 300.0) -> None:
        """Close, then connect with exponential backoff until `timeout`; host-key and key-file
        problems are not retried since waiting does not fix them."""
        self.close()
        deadline = time.monotonic() + timeout
        delay = _BACKOFF_START_S
        while True:
            remaining = deadline - time.monotonic()
            try:
                self._open(max(0.1, min(self.connect_timeout, remaining)))
                return
            except _LINK_ERRORS as e:
                last = self._describe(e)
                log.debug("%s not reachable yet: %s", self.target, last)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(f"{self.target} not reachable after {timeout:g}s: {last}")
            time.sleep(min(delay, remaining))  # backoff between attempts, not synchronisation
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _open(self, timeout: float) -> None:
        """One connection attempt. Raises HostKeyError/TransportError for problems that retrying cannot
        fix, and the raw paramiko/socket error for network failures."""
        pkey = self._load_key()
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            try:
                client.load_host_keys(str(self.known_hosts))
            except OSError as e:
                raise TransportError(f"cannot read known_hosts file {self.known_hosts}: {e.strerror}") from e
        client.set_missing_host_key_policy(_UnknownHostPolicy(self))
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                allow_agent=pkey is None,
                look_for_keys=pkey is None,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except paramiko.BadHostKeyException as e:
            client.close()
            raise HostKeyError(
                f"host key of {self.target} CHANGED: it presented {e.key.get_name()} "
                f"{e.key.fingerprint} but {self.known_hosts} records {e.expected_key.fingerprint}. "
                "This is a reflashed board or a man-in-the-middle; refusing to connect. If the board was "
                f"reflashed, remove its old entry (ssh-keygen -R '{_known_hosts_name(self.host, self.port)}' "
                f"-f {self.known_hosts}) and add the new key."
            ) from None
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded
        if self.keepalive_s > 0:
            transport.set_keepalive(self.keepalive_s)
        self._client = client
        log.debug("connected to %s", self.target)

    def _load_key(self) -> paramiko.PKey | None:
        """Load the private key up front so that a bad key file is reported without its path or content."""
        if self._key_file is None:
            return None
        try:
            return paramiko.PKey.from_path(self._key_file)
        except OSError as e:
            raise TransportError(f"cannot connect to {self.target}: SSH key file unreadable ({e.strerror})") from None
        except (paramiko.SSHException, ValueError):
            raise TransportError(
                f"cannot connect to {self.target}: SSH key file is not a usable unencrypted private key"
            ) from None

    def _describe(self, e: BaseException) -> str:
        """One line on why a connection failed, for a person; never includes key material."""
        if isinstance(e, paramiko.AuthenticationException):
            return f"authentication failed for user {self.user} (key not authorized on the board?)"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve host {self.host!r} ({e.strerror})"
        if isinstance(e, TimeoutError):
            return "timed out"
        if isinstance(e, paramiko.SSHException) and str(e) in _NO_SSH_SERVER:
            return (f"port {self.port} accepted the connection but no SSH server answered within "
                    f"{self.connect_timeout:g}s (is it the board's SSH port?)")
        if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
            causes = {err.strerror or str(err) for err in e.errors.values()}
            return f"port {self.port}: {', '.join(sorted(causes))}"
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        return str(e) or type(e).__name__

    def _client_transport(self) -> paramiko.Transport:
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        assert transport is not None
        return transport

    # -- commands ---------------------------------------------------------------------------------

    def _start(self, command: str, pty: bool, shown: str) -> paramiko.Channel:
        """Start `command` on a new channel. If the link turns out dead (board rebooted), reconnect
        once and retry; a channel that never started cannot have run the command twice."""
        try:
            return self._exec(command, pty)
        except _LINK_ERRORS as e:
            log.info("connection to %s lost (%s); reconnecting once", self.target, self._describe(e))
        self.close()
        try:
            return self._exec(command, pty)
        except _LINK_ERRORS as e:
            raise TransportError(f"cannot start `{shown}` on {self.target}: {self._describe(e)}") from e

    def _exec(self, command: str, pty: bool) -> paramiko.Channel:
        channel = self._client_transport().open_session(timeout=self.connect_timeout)
        if pty:
            channel.get_pty()
        channel.exec_command(command)
        return channel

    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT_S, stdin: str | None = None) -> CommandResult:
        """Run to completion; stdout and stderr are read together so neither pipe can fill up and stall
        the command. When the call gives up on the command (timeout, connection lost, interrupted), the
        command's process group is killed on the board, over a new connection if need be: it never runs
        on to skew what comes next."""
        log.debug("run on %s: %s", self.target, command)
        started = time.monotonic()
        deadline = started + timeout
        wrapped, tag = self._tag(command)
        channel = self._start(wrapped, pty=False, shown=command)
        writer = _feed_stdin(channel, stdin)
        stdout, stderr = bytearray(), bytearray()
        finished = False
        try:
            while True:
                while channel.recv_ready():
                    stdout += channel.recv(_CHUNK)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(_CHUNK)
                if channel.eof_received or channel.closed:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(f"`{command}` on {self.target} did not finish within {timeout:g}s")
                select.select([channel], [], [], remaining)
            exit_code = self._exit_status(channel, command, deadline, timeout)
            finished = True
        finally:
            channel.close()
            writer.join()
            if not finished:
                self._kill_tagged(tag)
        duration = time.monotonic() - started
        log.debug("`%s` on %s exited %d after %.2fs", command, self.target, exit_code, duration)
        return CommandResult(
            command,
            exit_code,
            stdout.decode("utf-8", errors="replace"),
            stderr.decode("utf-8", errors="replace"),
            duration,
        )

    def _exit_status(self, channel: paramiko.Channel, command: str, deadline: float, timeout: float) -> int:
        """Output ended; the exit status follows it (unless the connection died in between)."""
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise CommandTimeout(f"`{command}` on {self.target} did not finish within {timeout:g}s")
        if channel.exit_status == -1:
            raise TransportError(f"connection to {self.target} lost while running `{command}`")
        return channel.exit_status

    def stream(self, command: str, timeout: float | None = None) -> StreamingCommand:
        """Start `command` with a pty, so closing the channel hangs up (SIGHUP) the remote process;
        hence stdout and stderr arrive interleaved, as on a terminal."""
        log.debug("stream on %s: %s", self.target, command)
        deadline = None if timeout is None else time.monotonic() + timeout
        wrapped, tag = self._tag(command)
        channel = self._start(wrapped, pty=True, shown=command)
        return _SshStream(channel, command, self.target, deadline, timeout, lambda: self._kill_tagged(tag))

    # -- files ------------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        """One SFTP session per connection, opened on first use and dropped with the connection."""
        if self._sftp is None or not self.is_connected:
            self.connect()
            assert self._client is not None
            self._sftp = self._client.open_sftp()
        return self._sftp

    def put(self, local: str | Path, remote: str) -> None:
        """Upload; the remote directory must exist (none is created)."""
        log.debug("put %s -> %s:%s", local, self.target, remote)
        try:
            self._sftp_client().put(str(local), remote)
        except _LINK_ERRORS as e:
            raise TransportError(f"cannot copy {local} to {self.target}:{remote}: {self._describe(e)}") from e

    def get(self, remote: str, local: str | Path) -> None:
        """Download; the local directory must exist (none is created)."""
        log.debug("get %s:%s -> %s", self.target, remote, local)
        try:
            self._sftp_client().get(remote, str(local))
        except _LINK_ERRORS as e:
            raise TransportError(f"cannot copy {self.target}:{remote} to {local}: {self._describe(e)}") from e

    # -- port forwarding --------------------------------------------------------------------------

    @contextlib.contextmanager
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[int]:
        """Listen on an ephemeral 127.0.0.1 port; each connection to it is tunnelled to
        `remote_host:remote_port` as seen from the board. All tunnels close when the block ends."""
        transport = self._client_transport()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        local_port = listener.getsockname()[1]
        wake_r, wake_w = socket.socketpair()  # written once on exit; readable forever after
        threads: list[threading.Thread] = []
        acceptor = threading.Thread(
            target=self._accept_loop,
            args=(transport, listener, wake_r, threads, (remote_host, remote_port)),
            name=f"forward-{local_port}",
            daemon=True,
        )
        acceptor.start()
        log.debug("forward 127.0.0.1:%d -> %s:%s:%d", local_port, self.target, remote_host, remote_port)
        try:
            yield local_port
        finally:
            wake_w.send(b"x")
            acceptor.join(_FORWARD_JOIN_S)
            join_deadline = time.monotonic() + _FORWARD_JOIN_S
            for thread in threads:
                thread.join(max(0.0, join_deadline - time.monotonic()))
            stuck = [t.name for t in (acceptor, *threads) if t.is_alive()]
            if stuck:
                log.warning("forward threads still running after close: %s", ", ".join(stuck))
            for sock in (listener, wake_r, wake_w):
                sock.close()

    def _accept_loop(
        self,
        transport: paramiko.Transport,
        listener: socket.socket,
        wake: socket.socket,
        threads: list[threading.Thread],
        destination: tuple[str, int],
    ) -> None:
        while True:
            readable, _, _ = select.select([listener, wake], [], [])
            if wake in readable:
                return
            client, peer = listener.accept()
            thread = threading.Thread(
                target=self._pump,
                args=(transport, client, peer, wake, destination),
                name=f"forward-{peer[1]}",
                daemon=True,
            )
            threads.append(thread)
            thread.start()

    def _pump(
        self,
        transport: paramiko.Transport,
        client: socket.socket,
        peer: tuple[str, int],
        wake: socket.socket,
        destination: tuple[str, int],
    ) -> None:
        """Copy bytes both ways until both sides have ended (half-closes are passed on) or the
        forward is closed."""
        try:
            channel = transport.open_channel("direct-tcpip", destination, peer, timeout=self.connect_timeout)
        except _LINK_ERRORS as e:
            log.warning("forward to %s:%s:%d failed: %s", self.target, *destination, self._describe(e))
            client.close()
            return
        open_ends: list[socket.socket | paramiko.Channel] = [client, channel]
        try:
            while open_ends:
                readable, _, _ = select.select([*open_ends, wake], [], [])
                if wake in readable:
                    return
                if client in readable:
                    data = client.recv(_CHUNK)
                    if data:
                        channel.sendall(data)
                    else:
                        channel.shutdown_write()
                        open_ends.remove(client)
                if channel in readable:
                    data = channel.recv(_CHUNK)
                    if data:
                        client.sendall(data)
                    else:
                        with contextlib.suppress(OSError):
                            client.shutdown(socket.SHUT_WR)
                        open_ends.remove(channel)
        except _LINK_ERRORS as e:
            log.debug("forward connection from %s ended: %s", peer, e)
        finally:
            channel.close()
            client.close()


class _UnknownHostPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys with instructions, or record them when trust-on-first-use is on."""

    def __init__(self, owner: SshTransport) -> None:
        self._owner = owner

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        owner = self._owner
        if not owner.trust_on_first_use:
            raise HostKeyError(
                f"host key of {owner.target} ({key.get_name()} {key.fingerprint}) is not in "
                f"{owner.known_hosts}; refusing to connect. Verify the board, then run "
                f"`ssh-keyscan -p {owner.port} {owner.host} >> {owner.known_hosts}`, "
                "or set trust_on_first_use for this board in the inventory."
            )
        # append rather than rewrite: keeps the file's comments and other entries as they were
        owner.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(owner.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("trusting new host key of %s (%s), saved to %s", owner.target, key.fingerprint, owner.known_hosts)


class _SshStream(StreamingCommand):
    """Lines of a remote command's output as they arrive over its channel."""

    def __init__(
        self,
        channel: paramiko.Channel,
        command: str,
        target: str,
        deadline: float | None,
        timeout: float | None,
        kill: Callable[[], None],
    ) -> None:
        self._channel = channel
        self._kill = kill
        self._command = command
        self._target = target
        self._deadline = deadline
        self._timeout = timeout
        self._stopped = False

    def lines(self) -> Iterator[str]:
        """Yield lines until the output ends or stop() is called; if the timeout passes first, the
        command is stopped and CommandTimeout raised."""
        channel = self._channel
        splitter = LineSplitter()
        while True:
            try:
                if channel.recv_ready():
                    yield from splitter.feed(channel.recv(_CHUNK))
                    continue
                if channel.eof_received or channel.closed:
                    if not self._stopped:
                        yield from splitter.flush()
                    return
                remaining = None if self._deadline is None else self._deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.stop()
                    raise CommandTimeout(
                        f"`{self._command}` on {self._target} did not finish within {self._timeout:g}s")
                select.select([channel], [], [], remaining)
            except _LINK_ERRORS as e:
                if self._stopped:
                    return
                raise TransportError(f"connection to {self._target} lost while reading `{self._command}` ({e})") from e

    def stop(self) -> int | None:
        """Close the channel, which hangs up the remote process. Returns the exit code if the command
        had already ended by itself, else None."""
        self._stopped = True
        channel = self._channel
        if channel.eof_received:  # output ended by itself; its exit status follows right behind
            channel.status_event.wait(_EXIT_STATUS_WAIT_S)
        code = channel.exit_status if channel.exit_status_ready() and channel.exit_status != -1 else None
        channel.close()
        if code is None:  # the hang-up is enough on a live link; on a dead one only a kill over a new one is
            self._kill()
        return code


def _feed_stdin(channel: paramiko.Channel, stdin: str | None) -> threading.Thread:
    """Send stdin from a thread so a command that writes a lot before reading cannot deadlock us."""

    def feed() -> None:
        with contextlib.suppress(*_LINK_ERRORS):  # the command may exit without reading it all
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()

    thread = threading.Thread(target=feed, name="ssh-stdin", daemon=True)
    thread.start()
    return thread


def _known_hosts_name(host: str, port: int) -> str:
    """How known_hosts spells a host: plain for port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"

"""Local transport: the harness running on the Jetson itself, so "remote" commands are subprocesses.

Every command runs in its own process group, so a timeout or stop() kills the command together with
everything it started, which is what closing an SSH channel with a pty does on a real board.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from harness.errors import CommandTimeout, TransportError
from harness.transport.base import DEFAULT_TIMEOUT_S, CommandResult, StreamingCommand, Transport
from harness.transport.lines import LineSplitter

log = logging.getLogger(__name__)

_SHELL = "/bin/bash"
_CHUNK = 65536
_READER_JOIN_S = 5.0
_EXIT_WAIT_S = 2.0


class LocalTransport(Transport):
    """Runs commands with bash on this machine; connect, close and reconnect have nothing to do."""

    def __init__(self, name: str | None = None, session: str | None = None) -> None:
        self.target = name or "localhost"
        self.session = session or uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)

    def connect(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to release."""

    def reconnect(self, timeout: float = 300.0) -> None:
        """This machine is always reachable from itself."""

    def duplicate(self) -> LocalTransport:
        return LocalTransport(name=self.target, session=self.session)

    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT_S, stdin: str | None = None) -> CommandResult:
        log.debug("run on %s: %s", self.target, command)
        started = time.monotonic()
        with self._spawn(command, stdin=subprocess.PIPE) as proc:  # exiting closes the pipes
            try:
                stdout, stderr = proc.communicate(stdin.encode() if stdin is not None else b"", timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise CommandTimeout(f"`{command}` on {self.target} did not finish within {timeout:g}s") from None
        return CommandResult(
            command,
            proc.returncode,
            stdout.decode("utf-8", errors="replace"),
            stderr.decode("utf-8", errors="replace"),
            time.monotonic() - started,
        )

    def stream(self, command: str, timeout: float | None = None) -> StreamingCommand:
        """Stdout and stderr interleaved, like the SSH transport's pty; the deadline holds even while no
        line arrives."""
        log.debug("stream on %s: %s", self.target, command)
        proc = self._spawn(command, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        return _LocalStream(proc, command, self.target, timeout)

    def _spawn(self, command: str, stdin: int, stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
        tag = self._tag(command)[1]
        try:
            return subprocess.Popen(
                [_SHELL, "-c", command, tag],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # own process group: a timeout kills the command's children too
            )
        except OSError as e:
            raise TransportError(f"cannot start `{command}` on {self.target}: {e.strerror}") from e

    def put(self, local: str | Path, remote: str) -> None:
        """Copy; the destination directory must exist (none is created)."""
        _copy(local, remote, f"cannot copy {local} to {self.target}:{remote}")

    def get(self, remote: str, local: str | Path) -> None:
        """Copy; the destination directory must exist (none is created)."""
        _copy(remote, local, f"cannot copy {self.target}:{remote} to {local}")

    @contextlib.contextmanager
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[int]:
        """The board's ports are this machine's ports: nothing to forward."""
        yield remote_port


class _LocalStream(StreamingCommand):
    """Lines of a subprocess's stdout; a reader thread feeds a queue so the deadline can be kept."""

    _END = None

    def __init__(self, proc: subprocess.Popen[bytes], command: str, target: str, timeout: float | None) -> None:
        self._proc = proc
        self._command = command
        self._target = target
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._stopped = False
        self._code: int | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._eof = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"stream-{proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        splitter = LineSplitter()
        while chunk := os.read(fd, _CHUNK):
            for line in splitter.feed(chunk):
                self._queue.put(line)
        for line in splitter.flush():
            self._queue.put(line)
        self._eof.set()
        self._queue.put(self._END)

    def lines(self) -> Iterator[str]:
        """Yield lines until the output ends or stop() is called; if the timeout passes first, the
        command is killed and CommandTimeout raised."""
        while True:
            remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                self.stop()
                raise CommandTimeout(
                    f"`{self._command}` on {self._target} did not finish within {self._timeout:g}s"
                ) from None
            if line is self._END or self._stopped:
                return
            yield line

    def stop(self) -> int | None:
        """Kill the command's process group. Returns the exit code if it had ended by itself, else None."""
        if self._stopped:
            return self._code
        self._stopped = True
        if self._eof.is_set():  # output ended by itself; the exit follows right behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(_EXIT_WAIT_S)
        code = self._proc.poll()
        if code is None:
            _kill_group(self._proc)
        self._reader.join(_READER_JOIN_S)  # bounded: a daemon the command left behind may hold stdout
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        self._code = code
        return code


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command and everything it started (they share its process group), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _copy(source: str | Path, destination: str | Path, failure: str) -> None:
    try:
        shutil.copyfile(source, destination)
    except OSError as e:
        raise TransportError(f"{failure}: {e.strerror or e}") from e

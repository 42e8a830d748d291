"""A handle on the module deployed to a board: its API through an SSH tunnel, one-shot runs, logs."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.board import Board
from harness.errors import DeployError
from harness.transport.base import CommandResult

API_TIMEOUT_S = 10.0
#: the module's systemd unit where the board runs systemd
SYSTEMD_UNIT = "jetson-hil-module"
HEALTH_POLL_S = 0.25


def put_bytes(board: Board, data: bytes, remote: str) -> None:
    """Upload in-memory content (transports copy files, so go through a private temp file)."""
    with tempfile.NamedTemporaryFile(prefix="jetson-hil-") as tmp:
        tmp.write(data)
        tmp.flush()
        board.transport.put(tmp.name, remote)


def api_request_code(port: int, path: str, method: str = "GET", timeout: float = 5) -> str:
    """Python that calls the module's API on 127.0.0.1 and prints its answer (run where the module runs)."""
    return (f"import urllib.request as u; print(u.urlopen(u.Request('http://127.0.0.1:{port}{path}', "
            f"method='{method}'), timeout={timeout}).read().decode())")


@dataclass(frozen=True)
class DeployReport:
    """What a deploy had to do; a second deploy of the same module should do nothing."""

    copied_bundle: bool
    installed_requirements: bool
    restarted_service: bool
    seconds: float
    manager: str  # "systemd" or "supervisor"

    @property
    def changed(self) -> bool:
        return self.copied_bundle or self.installed_requirements or self.restarted_service


class ModuleHandle:
    """The running module on one board. ``close()`` drops the tunnel; ``stop()`` stops the service."""

    def __init__(self, board: Board, root: str, api_port: int, report: DeployReport, stopper):
        self.board, self.root, self.api_port = board, root, api_port
        self.report = report
        self._stopper = stopper
        self._tunnel = contextlib.ExitStack()
        self._local_port: int | None = None

    # one-shot commands -----------------------------------------------------------------------------
    def python_command(self, args: list[str]) -> str:
        env = f"JETSON_HIL_ENGINE_CACHE={shlex.quote(self.root + '/engines')}"
        return f"cd {shlex.quote(self.root + '/app')} && {env} {shlex.quote(self.root + '/venv/bin/python')} " + (
            shlex.join(["-m", "module", *args])
        )

    def run_module(self, args: list[str], timeout: float) -> CommandResult:
        """``python -m module ARGS`` on the board (bench, a one-shot run over fixture images)."""
        return self.board.transport.run(self.python_command(args), timeout=timeout)

    def put_tree(self, local: Path, remote_name: str) -> str:
        """Copy a local folder to ROOT/data/REMOTE_NAME (replacing it) and return the remote path."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(str(local), arcname=remote_name)
        target = f"{self.root}/data"
        archive = f"{target}/{remote_name}.tar.gz"
        self.board.transport.run(f"mkdir -p {shlex.quote(target)}", timeout=30).check()
        put_bytes(self.board, buffer.getvalue(), archive)
        q = shlex.quote
        self.board.transport.run(
            f"cd {q(target)} && rm -rf {q(remote_name)} && tar -xzf {q(archive)} && rm -f {q(archive)}", timeout=120
        ).check()
        return f"{target}/{remote_name}"

    def logs(self, lines: int = 200) -> str:
        log_file = shlex.quote(self.root + "/logs/module.log")
        return self.board.transport.run(f"tail -n {int(lines)} {log_file}", timeout=30).stdout

    # control API -----------------------------------------------------------------------------------
    def _port(self) -> int:
        if self._local_port is None:
            self._local_port = self._tunnel.enter_context(self.board.transport.forward(self.api_port))
        return self._local_port

    def api(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = API_TIMEOUT_S) -> dict:
        """Call the module's control API; HTTP errors come back as DeployError with the module's message. A
        tunnel that died with its SSH connection (a reboot, a reconnect) is opened again, once."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            return self._call(path, method, data, timeout)
        except (urllib.error.URLError, ConnectionError):
            self.close()
        try:
            return self._call(path, method, data, timeout)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise DeployError(f"{self.board.name}: module API {method} {path} unreachable: {exc}") from None

    def _call(self, path: str, method: str, data: bytes | None, timeout: float) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self._port()}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise DeployError(f"{self.board.name}: module API {method} {path}: {exc.code} {detail}") from None
        except TimeoutError as exc:
            raise DeployError(f"{self.board.name}: module API {method} {path}: no answer in {timeout:g} s") from exc

    def wait_healthy(self, timeout: float = 120.0) -> dict:
        """Poll /health until the module answers (engine builds make a first start slow); give up early
        when the module is gone for good rather than waiting out the timeout."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            health = self._probe_health()
            if isinstance(health, str):
                last = health
                break
            if health is not None:
                if health.get("status") in ("running", "stopped"):
                    return health
                last = f"module reports {health}"
            time.sleep(HEALTH_POLL_S)
        tail = self.logs(20).strip().splitlines()[-5:]
        raise DeployError(
            f"{self.board.name}: module not healthy ({last}); last log lines: " + " | ".join(tail)
        )

    def kill(self) -> int:
        """SIGKILL the module process, not its supervisor: a crash the deployment must recover from by itself.
        Returns the killed pid."""
        if self.report.manager == "systemd":
            pid = f"$(systemctl show -p MainPID --value {SYSTEMD_UNIT})"
        else:
            pid = f"$(cat {shlex.quote(self.root + '/run/module.pid')})"
        result = self.board.transport.run(f"pid={pid} && [ \"$pid\" -gt 0 ] && {self.board.sudo}kill -KILL $pid && "
                                          "echo $pid", timeout=15)
        if not result.ok or not result.stdout.strip().isdigit():
            raise DeployError(f"{self.board.name}: could not kill the module: {result.stderr.strip() or 'no pid'}")
        return int(result.stdout)

    def api_call_on_board(self, path: str, method: str = "GET", timeout: float = 5) -> str:
        """A shell command that calls the module's API from the board itself and prints the answer (no tunnel:
        the board's watchdog runs it as an undo when the harness is gone)."""
        code = api_request_code(self.api_port, path, method, timeout)
        return f"{shlex.quote(self.root + '/venv/bin/python')} -c {shlex.quote(code)}"

    def _gave_up_test(self) -> str | None:
        """A shell test that is true once whatever keeps the module running has given up on it (None: it never
        does)."""
        if self.report.manager == "systemd":
            return f"systemctl is-failed --quiet {SYSTEMD_UNIT}"
        return f"! kill -0 $(cat {shlex.quote(self.root + '/run/supervisor.pid')} 2>/dev/null) 2>/dev/null"

    def _probe_health(self) -> dict | str | None:
        """One look from the board itself (no refused tunnel connections in the logs while the module starts):
        its /health answer, None while it does not answer yet, or why it never will."""
        probe = f"{self.api_call_on_board('/health', timeout=2)} 2>/dev/null"
        gone = self._gave_up_test()
        command = f"{probe} || {{ {gone} && echo GAVE-UP; }}" if gone else probe
        result = self.board.transport.run(command, timeout=15)
        if result.stdout.strip() == "GAVE-UP":
            return "the module exited and its supervisor gave up"
        return json.loads(result.stdout) if result.ok and result.stdout.strip() else None

    def await_ready(self, say: Callable[[str], None], started: float, unchanged: str) -> ModuleHandle:
        """End of a deploy: wait for health (dropping the tunnel if it never comes) and say what it took."""
        try:
            self.wait_healthy()
        except DeployError:
            self.close()
            raise
        took = unchanged if not self.report.changed else f"deployed in {time.monotonic() - started:.1f} s"
        say(f"module ready ({took})")
        return self

    def stop(self) -> None:
        """Stop the service on the board (teardown); the deployed files stay for the next deploy."""
        self.close()
        self._stopper()

    def close(self) -> None:
        self._tunnel.close()
        self._local_port = None

    def __enter__(self) -> ModuleHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

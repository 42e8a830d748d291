"""LocalTransport: the harness running on the board itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TransportError
from harness.transport.local import LocalTransport
from tests.sshd import process_running, unique_sleep, wait_until


@pytest.fixture
def local() -> LocalTransport:
    return LocalTransport()


def test_run_returns_stdout_stderr_and_exit_code(local: LocalTransport) -> None:
    result = local.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert local.target == "localhost"


def test_run_feeds_stdin(local: LocalTransport) -> None:
    assert local.run("tr a-z A-Z", stdin="jetson\n").stdout == "JETSON\n"


def test_timeout_kills_the_whole_process_group(local: LocalTransport) -> None:
    """Killing only the shell would leave the background sleep running."""
    sleep = unique_sleep()
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"on localhost did not finish within 0\.5s"):
        local.run(f"{sleep} & echo started; wait", timeout=0.5)
    assert time.monotonic() - started < 3
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to be killed with its group")


def test_stream_yields_lines_while_command_runs(local: LocalTransport, tmp_path: Path) -> None:
    """The command cannot end before the test creates the flag file."""
    flag = tmp_path / "flag"
    command = f"echo first; while [ ! -e {flag} ]; do sleep 0.05; done; printf second; exit 4"
    with local.stream(command, timeout=20) as stream:
        lines = stream.lines()
        assert next(lines) == "first"
        flag.touch()
        assert list(lines) == ["second"]
        assert stream.stop() == 4


def test_stream_stop_kills_the_process_group(local: LocalTransport) -> None:
    sleep = unique_sleep()
    stream = local.stream(f"{sleep} & echo started; wait", timeout=30)
    assert next(stream.lines()) == "started"
    wait_until(lambda: process_running(sleep), 5, f"`{sleep}` to start")
    assert stream.stop() is None
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to die after stop()")


def test_stream_timeout_raises_and_kills(local: LocalTransport) -> None:
    sleep = unique_sleep()
    stream = local.stream(f"echo a; {sleep}", timeout=0.5)
    received = []
    with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5s"):
        received.extend(stream.lines())
    assert received == ["a"]
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to die after the timeout")


def test_put_get_round_trip_is_byte_exact(local: LocalTransport, tmp_path: Path) -> None:
    payload = os.urandom(100_000)
    (tmp_path / "source.bin").write_bytes(payload)
    local.put(tmp_path / "source.bin", str(tmp_path / "board.bin"))
    local.get(str(tmp_path / "board.bin"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload


def test_put_does_not_create_directories(local: LocalTransport, tmp_path: Path) -> None:
    (tmp_path / "source").write_text("x")
    missing = tmp_path / "no-such-dir" / "file"
    with pytest.raises(TransportError, match=str(missing)):
        local.put(tmp_path / "source", str(missing))
    assert not missing.parent.exists()


def test_forward_needs_no_tunnel(local: LocalTransport) -> None:
    with local.forward(8080) as port:
        assert port == 8080

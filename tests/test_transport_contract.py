"""The Transport contract, held by every transport: the same tests for local and SSH (real sshd)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.errors import CommandTimeout
from harness.transport.base import Transport
from harness.transport.local import LocalTransport
from tests.sshd import process_running, unique_sleep, wait_until


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.sshd)])
def transport(request: pytest.FixtureRequest) -> Transport:
    if request.param == "local":
        return LocalTransport()
    return request.getfixturevalue("ssh_transport")


def test_run_returns_stdout_stderr_and_exit_code(transport: Transport) -> None:
    result = transport.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.duration_s > 0


def test_run_feeds_stdin(transport: Transport) -> None:
    assert transport.run("tr a-z A-Z", stdin="jetson\n").stdout == "JETSON\n"


def test_stream_yields_lines_while_command_runs(transport: Transport, tmp_path: Path) -> None:
    """The command cannot end before the test creates the flag file, so receiving "first" proves
    lines arrive while it runs."""
    flag = tmp_path / "flag"
    command = f"echo first; while [ ! -e {flag} ]; do sleep 0.05; done; echo second; exit 4"
    with transport.stream(command, timeout=20) as stream:
        lines = stream.lines()
        assert next(lines) == "first"
        flag.touch()
        assert list(lines) == ["second"]
        assert stream.stop() == 4


def test_stream_stop_kills_the_command(transport: Transport) -> None:
    sleep = unique_sleep()
    stream = transport.stream(f"{sleep} & echo started; wait", timeout=30)
    assert next(stream.lines()) == "started"
    wait_until(lambda: process_running(sleep), 5, f"`{sleep}` to start")
    assert stream.stop() is None
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to die after stop()")


def test_stream_timeout_raises_and_stops_command(transport: Transport) -> None:
    sleep = unique_sleep()
    stream = transport.stream(f"echo a; {sleep}", timeout=1)
    received = []
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not finish within 1s"):
        received.extend(stream.lines())
    assert received == ["a"]
    assert time.monotonic() - started < 5
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to die after the stream timed out")


def test_put_get_round_trip_is_byte_exact(transport: Transport, tmp_path: Path) -> None:
    payload = os.urandom(1_000_000) + bytes(range(256))
    source, remote, back = tmp_path / "source.bin", tmp_path / "remote.bin", tmp_path / "back.bin"
    source.write_bytes(payload)
    transport.put(source, str(remote))
    transport.get(str(remote), back)
    assert remote.read_bytes() == payload
    assert back.read_bytes() == payload


def test_run_timeout_kills_the_command(transport: Transport) -> None:
    sleep = unique_sleep()
    with pytest.raises(CommandTimeout):
        transport.run(f"{sleep}; echo never", timeout=1)
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to die after its run() timed out")


def test_kill_strays_kills_other_sessions_commands_only(transport: Transport, request: pytest.FixtureRequest) -> None:
    """What a dead session left running on the board is killed by the next session; its own commands are not."""
    local = isinstance(transport, LocalTransport)
    other = LocalTransport() if local else request.getfixturevalue("sshd_server").transport()
    assert other.session != transport.session
    theirs, ours = unique_sleep(), unique_sleep()
    with other.stream(f"{theirs} & echo started; wait", timeout=60) as stray, \
            transport.stream(f"{ours} & echo started; wait", timeout=60) as mine:
        assert next(stray.lines()) == "started" and next(mine.lines()) == "started"
        wait_until(lambda: process_running(theirs) and process_running(ours), 5, "both sleeps to start")
        killed = transport.kill_strays()
        wait_until(lambda: not process_running(theirs), 5, f"the stray `{theirs}` to die")
        assert len(killed) >= 1 and process_running(ours)
    other.close()

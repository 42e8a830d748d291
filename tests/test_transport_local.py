"""LocalTransport: the harness running on the board itself."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TransportError
from harness.transport.local import LocalTransport
from tests.sshd import process_running, unique_sleep, wait_until


@pytest.fixture
def local() -> LocalTransport:
    return LocalTransport()


def test_timeout_kills_the_whole_process_group(local: LocalTransport) -> None:
    """Killing only the shell would leave the background sleep running."""
    sleep = unique_sleep()
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"on localhost did not finish within 0\.5s"):
        local.run(f"{sleep} & echo started; wait", timeout=0.5)
    assert time.monotonic() - started < 3
    wait_until(lambda: not process_running(sleep), 5, f"`{sleep}` to be killed with its group")


def test_put_does_not_create_directories(local: LocalTransport, tmp_path: Path) -> None:
    (tmp_path / "source").write_text("x")
    missing = tmp_path / "no-such-dir" / "file"
    with pytest.raises(TransportError, match=str(missing)):
        local.put(tmp_path / "source", str(missing))
    assert not missing.parent.exists()


def test_forward_needs_no_tunnel(local: LocalTransport) -> None:
    with local.forward(8080) as port:
        assert port == 8080

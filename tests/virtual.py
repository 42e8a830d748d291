"""Virtual Jetson fixtures: one virtual board per profile, reached over SSH like a real one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.board import Board
from harness.errors import HarnessError
from harness.inventory import Lab
from harness.lab import open_board
from tests.ci import unavailable

VIRTUAL_PROFILES = ("nano", "xavier-nx", "agx-orin")


def docker_or_skip() -> None:
    """CI must run these tests; elsewhere a machine without Docker skips them with the reason."""
    from harness.virtual.engine import docker_client

    try:
        docker_client()
    except HarnessError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session", params=VIRTUAL_PROFILES)
def virtual_board(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """A connected virtual board of each profile, started for the session and removed after."""
    docker_or_skip()
    os.environ.setdefault("JETSON_HIL_LEASE_DIR", str(tmp_path_factory.mktemp("leases")))
    with open_board(f"virtual:{request.param}", Lab()) as board:
        yield board

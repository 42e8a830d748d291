"""A real PostgreSQL server for the tests (Debian's `postgresql` package, which scripts/setup.sh installs),
started in a folder of its own on a free port and stopped after the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import unavailable
from tests.sshd import free_port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://jetson@127.0.0.1:PORT/postgres, trust auth, fsync off (a test server)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        unavailable("no PostgreSQL server here (apt-get install postgresql; scripts/setup.sh installs it)")
    bindir = found[-1].parent
    home = Path(tempfile.mkdtemp(prefix="jetson-hil-pg-"))
    data = home / "data"
    as_server: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: Debian's package made a postgres user
        as_server = ["runuser", "-u", "postgres", "--"]
        home.chmod(0o755)
        shutil.chown(home, "postgres")
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_server, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "jetson", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60", "-o",
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql://jetson@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)

"""The Docker engine connection, with an error that says exactly what is missing."""

from __future__ import annotations

import shutil

import docker
from docker.errors import DockerException

from harness.errors import HarnessError


def docker_client() -> docker.DockerClient:
    """A client for the local Docker engine ($DOCKER_HOST or the default socket)."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        cause = str(exc).splitlines()[0][:160]
        if shutil.which("dockerd") is None:
            hint = "no Docker engine is installed: `apt-get install docker.io`, then start `dockerd`"
        else:
            hint = ("the Docker engine is installed but not running: start it "
                    "(`systemctl start docker`, or `dockerd &` where systemd does not run)")
        raise HarnessError(f"virtual boards need a running Docker engine; {hint} ({cause})") from None
    return client

"""Docker deployment against this machine's Docker engine standing in for a board's engine.

No virtual board runs its own engine, so the local engine plays the board: the same client code as
for a board, reached through a unix socket instead of ssh://. The image is the CPU one, built on the
virtual boards' Debian base (no registry is needed); the container shares this machine's network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import docker
import pytest

from harness.board import Board
from harness.deploy import DockerDeployer, ServiceSpec
from harness.deploy.docker import CONTAINER, ENGINE_VOLUME, RECIPES, STATE_VOLUME, connect, transfer_image
from harness.errors import DeployError, HarnessError
from harness.profiles import get_profile
from harness.transport.local import LocalTransport
from tests.ci import unavailable
from tests.sshd import free_port

pytestmark = pytest.mark.virtual


def _remove_module(client: docker.DockerClient) -> None:
    """Teardown: the container and its volumes go, the image stays cached for the next run."""
    for container in client.containers.list(all=True, filters={"name": f"^{CONTAINER}$"}):
        container.remove(force=True)
    for name in (STATE_VOLUME, ENGINE_VOLUME):
        for volume in client.volumes.list(filters={"name": f"^{name}$"}):
            volume.remove(force=True)


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, docker.DockerClient, str]]:
    """The local engine's URL, a client and the Debian base image (built once by the virtual-board code)."""
    from harness.virtual.image import ensure_base

    url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = connect(url)
        base = ensure_base(client)
    except HarnessError as exc:
        unavailable(f"no local Docker engine or base image: {exc}")
    _remove_module(client)
    yield url, client, base
    _remove_module(client)
    client.close()


def test_deploy_runs_the_module_container_and_a_second_deploy_changes_nothing(engine) -> None:
    url, client, base = engine
    board = Board("docker-local", get_profile("orin-nano"), LocalTransport(name="docker-local"))
    deployer = DockerDeployer(board, url, nvidia_runtime=False, recipe=RECIPES["cpu"].with_base(base))
    service = ServiceSpec(fps_cap=5, api_port=free_port())

    first = deployer.deploy(service)
    try:
        assert first.report.restarted_service and first.report.manager == "docker"
        assert first.api("/health")["status"] == "running"  # network host: the API is on 127.0.0.1 here
        container = client.containers.get(CONTAINER)
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        info = first.run_module(["info"], timeout=60)  # docker exec through the board transport
        assert info.ok and "onnxruntime" in info.stdout, info.stderr
    finally:
        first.close()

    second = DockerDeployer(board, url, nvidia_runtime=False, recipe=RECIPES["cpu"].with_base(base)).deploy(service)
    try:
        assert not second.report.changed, second.report
        assert second.container.id == container.id
    finally:
        second.close()

    moved = DockerDeployer(board, url, nvidia_runtime=False, recipe=RECIPES["cpu"].with_base(base))
    handle = moved.deploy(ServiceSpec(fps_cap=4, api_port=service.api_port))
    try:
        assert handle.report.restarted_service and not handle.report.copied_bundle
        assert handle.api("/config")["fps_cap"] == 4
    finally:
        handle.stop()
    assert not client.containers.list(all=True, filters={"name": f"^{CONTAINER}$"})


def test_a_container_that_cannot_start_fails_the_deploy_early_with_its_reason(engine) -> None:
    """Exit 2 under restart unless-stopped would loop forever: the deploy stops waiting at the first exit."""
    url, client, base = engine
    board = Board("docker-local", get_profile("orin-nano"), LocalTransport(name="docker-local"))
    deployer = DockerDeployer(board, url, nvidia_runtime=False, recipe=RECIPES["cpu"].with_base(base))
    started = time.monotonic()
    try:
        with pytest.raises(DeployError, match=r"the module exited .*unsupported uplink sink 'kafka://broker/t'"):
            deployer.deploy(ServiceSpec(fps_cap=5, sink="kafka://broker/t", api_port=free_port()))
        assert time.monotonic() - started < 60
    finally:
        _remove_module(client)


def test_transfer_streams_an_image_through_save_and_load(engine) -> None:
    """The save -> load path a remote board's engine gets, here into the same engine (a no-op load)."""
    _, client, base = engine
    transfer_image(client, client, base)
    assert client.images.get(base).tags

"""The IoT Edge runtime's image publishing against a real registry: Debian's docker-registry (the CNCF distribution
registry) with htpasswd authentication on this machine, the image built on the local engine (CPU recipe, on the
virtual boards' Debian base: nothing is pulled), tagged and pushed with credentials from the environment."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import bcrypt
import pytest
from rich.console import Console

from harness.board import Board
from harness.deploy import DockerDeployer
from harness.deploy.bundle import MODULE_DIR
from harness.deploy.docker import RECIPES, connect
from harness.deploy.iothub import IMAGE_NAME, DockerEdgeRuntime
from harness.errors import DeployError, HarnessError
from harness.inventory import IotHubConfig, RegistryConfig
from harness.profiles import get_profile
from harness.transport.local import LocalTransport
from tests.ci import unavailable
from tests.sshd import free_port

pytestmark = pytest.mark.virtual

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USER, PASSWORD = "lab-ci", "registry password, not a real one"


def _get(url: str, password: str | None = PASSWORD) -> dict:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1 (which Docker trusts over plain HTTP) that wants a user and password."""
    if not os.access(REGISTRY, os.X_OK):
        unavailable("needs Debian's docker-registry (scripts/setup.sh installs it)")
    folder = tmp_path_factory.mktemp("registry")
    (folder / "htpasswd").write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()))
    port = free_port()
    (folder / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: jetson-hil-test\n    path: {folder / 'htpasswd'}\n")
    with open(folder / "registry.log", "wb") as log:
        server = subprocess.Popen([REGISTRY, "serve", str(folder / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"http://127.0.0.1:{port}/v2/")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"docker-registry did not answer: {(folder / 'registry.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def runtime(registry: str, monkeypatch: pytest.MonkeyPatch) -> DockerEdgeRuntime:
    from harness.virtual.image import ensure_base

    url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        base = ensure_base(connect(url))
    except HarnessError as exc:
        unavailable(f"no local Docker engine or base image: {exc}")
    monkeypatch.setenv("LAB_REGISTRY_USER", USER)
    monkeypatch.setenv("LAB_REGISTRY_PASSWORD", PASSWORD)
    board = Board("edge-01", get_profile("orin-nano"), LocalTransport(name="edge-01"))
    config = IotHubConfig(device_id="edge-01", connection_string_env="LAB_IOTHUB", registry=RegistryConfig(
        address=registry, username_env="LAB_REGISTRY_USER", password_env="LAB_REGISTRY_PASSWORD"))
    builder = DockerDeployer(board, url, nvidia_runtime=False, recipe=RECIPES["cpu"].with_base(base))
    return DockerEdgeRuntime(board, MODULE_DIR, config, Console(stderr=True), builder)


def test_the_module_image_is_pushed_to_the_registry_with_the_labs_credentials(runtime: DockerEdgeRuntime,
                                                                              registry: str) -> None:
    image = runtime.publish()
    repository, tag = image.rsplit(":", 1)
    assert repository == f"{registry}/{IMAGE_NAME}"
    assert tag in _get(f"http://{registry}/v2/{IMAGE_NAME}/tags/list")["tags"]
    with pytest.raises(urllib.error.HTTPError, match="401"):
        _get(f"http://{registry}/v2/{IMAGE_NAME}/tags/list", password=None)
    assert runtime.publish() == image  # content-addressed: the same module is the same image


def test_a_wrong_registry_password_is_one_line_without_it(runtime: DockerEdgeRuntime,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_REGISTRY_PASSWORD", "not the password")
    with pytest.raises(DeployError) as info:
        runtime.publish()
    message = str(info.value)
    assert message.startswith(f"pushing {runtime.config.registry.address}/{IMAGE_NAME}:")
    assert "not the password" not in message and PASSWORD not in message and "\n" not in message

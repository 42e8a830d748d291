"""IoT Hub deployment (`--deploy iothub`): the module image published where the device's IoT Edge pulls it, a
deployment manifest applied to the device through the hub, and edgeAgent's report waited for.

The harness never touches the module on the board to deploy it: the hub carries the deployment, IoT Edge runs
it. What runs modules on the device is an `EdgeRuntime`, chosen by the board's `iothub.runtime` in lab.yaml:
`docker` is IoT Edge itself (the image built here and pushed to the lab's registry, the module a container on the
device's engine); other runtimes register themselves (the virtual lab's emulated edge device does). The device's
deployment before the session is recorded and put back when the session stops the module.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from docker.errors import APIError, DockerException, NotFound
from rich.console import Console

from harness.board import Board
from harness.errors import DeployError
from harness.inventory import IotHubConfig
from harness.iothub import manifest as edge_manifest
from harness.iothub.hub import AGENT, HUB, EdgeDevice
from module.model import DEFAULT_MODEL, file_sha256

from .bundle import MODULE_DIR, module_bundle
from .docker import STATE_DIR, DockerDeployer, DockerModuleHandle
from .handle import DeployReport, ModuleHandle
from .service import ServiceSpec

IMAGE_NAME = "jetson-hil-module"
MANIFEST_FILE = "iothub-deployment.json"


class EdgeRuntime(Protocol):
    """What runs the module on an IoT Edge device, seen from the harness."""

    #: whether the module reaches its module twin there (through edgeHub): the deploy then also waits for the
    #: twin to report the model the harness deployed
    module_twin: bool

    def service(self, service: ServiceSpec) -> ServiceSpec:
        """The module's options as this runtime runs it (under IoT Edge: its output goes to edgeHub)."""

    #: where the module's files are inside what runs it (the module's --state-dir and paths are under it)
    def module_root(self, image: str) -> str: ...

    def prepare(self) -> None:
        """Anything the device needs before a deployment reaches it."""

    def publish(self) -> str:
        """The module image, where the device pulls it from; its reference."""

    def handle(self, image: str, api_port: int, report: DeployReport, stopper: Callable[[], None]) -> ModuleHandle:
        """The running module, as the suites use it."""


#: a runtime's factory: (board, module folder, the board's iothub config, console)
EdgeRuntimeFactory = Callable[[Board, Path, IotHubConfig, Console], EdgeRuntime]
#: where other packages name their runtimes (the virtual lab's: `virtual-edge`)
RUNTIME_ENTRY_POINTS = "jetson_hil.edge_runtimes"


class DockerEdgeRuntime:
    """IoT Edge itself: the module image built here (for the board's CPU and L4T), pushed to the lab's registry
    with the credentials from the environment, run by IoT Edge as a container on the device's engine, which the
    harness reaches as the Docker deployer does (ssh://) for one-shot runs and logs."""

    module_twin = True

    def __init__(self, board: Board, module_dir: Path, config: IotHubConfig, console: Console,
                 builder: DockerDeployer | None = None) -> None:
        """`builder`: how the image is built and where the device's engine is (default: as `--deploy docker`
        would, for this board)."""
        self.board, self.module_dir, self.config, self.console = board, module_dir, config, console
        self.docker = builder or DockerDeployer(board, module_dir=module_dir, console=console)

    def service(self, service: ServiceSpec) -> ServiceSpec:
        return service if service.sink else replace(service, sink=f"iotedge:{edge_manifest.OUTPUT}")

    def module_root(self, image: str) -> str:
        return STATE_DIR

    def prepare(self) -> None:
        if self.config.registry is None:
            raise DeployError(f"{self.board.name}: its iothub entry names no registry; IoT Edge pulls the module "
                              "image from one (lab.yaml: iothub.registry)")

    def publish(self) -> str:
        registry = self.config.registry
        assert registry is not None
        local = self.docker.image_tag(module_bundle(self.module_dir).sha256)
        repository, tag = f"{registry.address}/{IMAGE_NAME}", local.rsplit(":", 1)[1]
        credentials = registry.credentials(os.environ)
        builder = self.docker.builder
        try:
            self.docker.build_image(local)
            builder.images.get(local).tag(repository, tag)
            self.console.print(f"[bold]{self.board.name}[/]: pushing {repository}:{tag}")
            auth = {"username": credentials["username"], "password": credentials["password"]}
            for line in builder.images.push(repository, tag, stream=True, decode=True, auth_config=auth):
                if "error" in line:
                    raise DeployError(f"pushing {repository}:{tag} failed: {line['error'].strip()}")
        except (APIError, DockerException) as exc:
            raise DeployError(f"publishing the module image to {registry.address} failed: {exc}") from None
        return f"{repository}:{tag}"

    def handle(self, image: str, api_port: int, report: DeployReport, stopper: Callable[[], None]) -> ModuleHandle:
        try:
            container = self.docker.engine.containers.get(edge_manifest.MODULE_ID)
        except NotFound:
            raise DeployError(f"{self.board.name}: edgeAgent reports {edge_manifest.MODULE_ID} running, but the "
                              "board's engine has no such container") from None
        return DockerModuleHandle(self.board, container, api_port, report, stopper)


def edge_runtime(name: str) -> EdgeRuntimeFactory:
    """The runtime lab.yaml's `iothub.runtime` names: docker (IoT Edge), or one a package registers."""
    if name == "docker":
        return DockerEdgeRuntime
    registered = {entry.name: entry for entry in entry_points(group=RUNTIME_ENTRY_POINTS)}
    if name not in registered:
        raise DeployError(f"unknown iothub runtime {name!r} in lab.yaml; choose from "
                          f"{', '.join(sorted({'docker', *registered}))}")
    return registered[name].load()


def module_version(image: str, service: ServiceSpec, root: str) -> str:
    """The module's version in the manifest: edgeAgent restarts the module when it changes."""
    return hashlib.sha256(f"{image}\n{service.command(root)}".encode()).hexdigest()[:12]


class IotHubDeployer:
    """Deploys the module to `board` through the IoT Hub its lab.yaml entry names."""

    def __init__(self, board: Board, module_dir: Path = MODULE_DIR, config: IotHubConfig | None = None,
                 run_dir: Path | None = None, console: Console | None = None) -> None:
        if config is None:
            raise DeployError(f"{board.name} has no iothub entry in lab.yaml (device_id, connection_string_env): "
                              "--deploy iothub needs one")
        self.board, self.module_dir, self.config, self.run_dir = board, module_dir, config, run_dir
        self.console = console or Console(stderr=True)
        self.runtime = edge_runtime(config.runtime)(board, module_dir, config, self.console)
        self._previous: dict | None = None
        self._without_module: dict | None = None

    def _say(self, text: str) -> None:
        self.console.print(f"[bold]{self.board.name}[/]: {text}")

    def _device(self) -> EdgeDevice:
        return EdgeDevice(self.config.connection_string(os.environ), self.config.device_id, self.config.ca_file)

    def manifest(self, image: str, service: ServiceSpec) -> dict:
        root = self.runtime.module_root(image)
        options = {**edge_manifest.module_create_options(self.board.profile.soc.startswith("tegra"),
                                                         service.api_port),
                   "Cmd": service.argv(root)[3:], "Env": [f"JETSON_HIL_API_PORT={service.api_port}"]}
        config = edge_manifest.ModuleConfig(backend=service.backend, precision=service.precision)
        return edge_manifest.build_manifest(image, config, create_options=options, registry=self.config.registry,
                                            version=module_version(image, service, root))

    def deploy(self, service: ServiceSpec | None = None) -> ModuleHandle:
        service = self.runtime.service((service or ServiceSpec()).on(self.board.backend))
        started = time.monotonic()
        self.runtime.prepare()
        image = self.runtime.publish()
        manifest = self.manifest(image, service)
        if self.run_dir is not None:
            edge_manifest.save(manifest, self.run_dir / MANIFEST_FILE)
        content = manifest["modulesContent"]
        device = self._device()
        if self._previous is None:  # the first deploy of the session: what to put back at its end
            self._previous = device.deployed_content([edge_manifest.MODULE_ID])
            self._without_module = without_module(content)
        try:
            version, sent = device.apply(content)
            self._say(f"deployment applied to {self.config.device_id} through IoT Hub {device.hub}"
                      if sent else f"{self.config.device_id} already has this deployment")
            # the module that answers must be the one deployed: its twin reports the model it loaded
            model = {"model_sha256": file_sha256(self.module_dir / "models" / DEFAULT_MODEL.name)}
            with self.console.status(f"{self.board.name}: waiting for edgeAgent") as status:
                device.wait_applied(version, edge_manifest.MODULE_ID, self.config.timeout_s,
                                    reported=model if self.runtime.module_twin else None,
                                    say=lambda text: status.update(f"{self.board.name}: {text}"))
        except DeployError:
            self.restore()  # a deployment that does not run is not left crash-looping on the device
            raise
        report = DeployReport(False, False, sent, round(time.monotonic() - started, 2), "iotedge")
        handle = self.runtime.handle(image, service.api_port, report, self.restore)
        return handle.await_ready(self._say, started, "unchanged, nothing sent")

    def restore(self) -> None:
        """Put the device's deployment back as it was before the session; a device that had none keeps its
        runtime and routes without the module."""
        if self._previous is None or self._without_module is None:
            return
        content = self._previous if self._previous.get(AGENT) else self._without_module
        version, _ = self._device().apply(content)
        self._say(f"deployment of {self.config.device_id} restored (edgeAgent version {version})")


def without_module(content: dict) -> dict:
    """The deployment with the module, its route and its twin removed: the runtime and edgeHub alone."""
    agent = copy.deepcopy(content[AGENT])
    agent["properties.desired"]["modules"] = {}
    hub = copy.deepcopy(content[HUB])
    hub["properties.desired"]["routes"] = {}
    return {AGENT: agent, HUB: hub}

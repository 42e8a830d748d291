"""IoT Edge on a virtual board, for `--deploy iothub`: the virtual lab's hub, the board provisioned as its device,
and module images staged where the board's emulated edge agent (rootfs/.../edge_agent.py) runs them.

What this emulates and what it does not: the hub is real HTTPS with SAS signatures (harness.virtual.hub); the
deployment the harness applies is the one a lab's would be (same manifest, validated against schema 2.0, same
SDK calls); the device side is an emulated edgeAgent that reads it and reports as edgeAgent does. There is no
container engine in a virtual board: the module "image" is the module's code and virtualenv, staged over SSH
under IMAGES/<name>/<tag> (content-addressed), and run as a process with the manifest's Cmd and Env. A lab with
real IoT Edge also exercises the registry push and pull, createOptions in Docker (binds, ports, the nvidia
runtime) and edgeHub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from harness.board import Board
from harness.deploy.bundle import module_bundle, requirements_text
from harness.deploy.handle import DeployReport, ModuleHandle, put_bytes
from harness.deploy.native import NativeDeployer
from harness.deploy.service import ServiceSpec
from harness.inventory import IotHubConfig
from harness.virtual.hub import BOARD_SIDE_NAME, RunningHub, ensure_hub

#: the name the virtual lab's edge runtime goes by in lab.yaml (iothub.runtime)
RUNTIME = "virtual-edge"
#: the environment variable holding the virtual hub's connection string (set for the session that uses it)
HUB_ENV = "JETSON_HIL_VIRTUAL_IOTHUB"
IMAGES = "/var/lib/jetson-hil-edge/images"
IMAGE_NAME = "jetson-hil-module"
#: what IoT Edge's provisioning leaves on a device: its hub, its identity and key, the hub's certificate
EDGE_CONFIG = "/etc/jetson-hil/edge"


def hub_dir() -> Path:
    from harness.virtual.boards import state_dir

    return state_dir(".iothub")


def iothub_config(device_id: str) -> IotHubConfig:
    """The iothub entry of a virtual board: its own device on the virtual lab's hub."""
    return IotHubConfig(device_id=device_id, connection_string_env=HUB_ENV, runtime=RUNTIME,
                        ca_file=hub_dir() / "hub.pem", timeout_s=300.0)


class EdgeImageHandle(ModuleHandle):
    """The module as the edge agent runs it: from its image folder, restarted by the agent after a crash (the
    agent's back-off), so no answer yet is never 'gone for good'."""

    def _gave_up_test(self) -> None:
        return None


class VirtualEdgeRuntime:
    """The virtual board as an IoT Edge device of the virtual lab's hub. No edgeHub: the module keeps the output
    and the twin-less configuration the session gives it."""

    module_twin = False

    def __init__(self, board: Board, module_dir: Path, config: IotHubConfig, console: Console) -> None:
        self.board, self.module_dir, self.config, self.console = board, module_dir, config, console

    def service(self, service: ServiceSpec) -> ServiceSpec:
        return service

    def module_root(self, image: str) -> str:
        name, _, tag = image.rsplit("/", 1)[-1].partition(":")
        return f"{IMAGES}/{name}/{tag}"

    def prepare(self) -> None:
        """Start the hub (once), register the board's device and provision the board with it."""
        hub = ensure_hub(hub_dir())
        os.environ[HUB_ENV] = hub.connection_string
        self._provision(hub)

    def _provision(self, hub: RunningHub) -> None:
        config = json.dumps({"hub": f"{BOARD_SIDE_NAME}:{hub.port}", "hostname": hub.host,
                             "device_id": self.config.device_id, "device_key": hub.register(self.config.device_id),
                             "ca_file": f"{EDGE_CONFIG}/hub.pem"}, indent=1) + "\n"
        q = shlex.quote
        current = self.board.transport.run(f"cat {q(EDGE_CONFIG)}/config.json 2>/dev/null", timeout=15).stdout
        if current == config:
            return
        self.board.transport.run(f"mkdir -p {q(EDGE_CONFIG)} && chmod 700 {q(EDGE_CONFIG)}", timeout=15).check()
        put_bytes(self.board, hub.ca_file.read_bytes(), f"{EDGE_CONFIG}/hub.pem")
        new = f"{EDGE_CONFIG}/config.json.new"
        put_bytes(self.board, config.encode(), new)
        self.board.transport.run(f"chmod 600 {q(new)} && mv {q(new)} {q(EDGE_CONFIG)}/config.json", timeout=15).check()

    def publish(self) -> str:
        """The module staged as an image on the board (what a registry pull would leave there)."""
        bundle = module_bundle(self.module_dir)
        tag = hashlib.sha256(f"{bundle.sha256}\n{requirements_text(self.module_dir)}".encode()).hexdigest()[:12]
        image = f"{BOARD_SIDE_NAME}/{IMAGE_NAME}:{tag}"
        NativeDeployer(self.board, self.module_dir, self.console).stage(self.module_root(image))
        return image

    def handle(self, image: str, api_port: int, report: DeployReport, stopper: Callable[[], None]) -> ModuleHandle:
        return EdgeImageHandle(self.board, self.module_root(image), api_port, report, stopper)

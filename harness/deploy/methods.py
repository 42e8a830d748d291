"""How the suites deploy the module: one small interface, a deployer per method (`--deploy`, or per board in
lab.yaml). Every deployer returns a `ModuleHandle`, which is all the suites use of a deployed module: its API
(health, info), a module command run where the module runs, logs, stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.board import Board
from harness.errors import ConfigError
from harness.inventory import IotHubConfig

from .docker import DockerDeployer
from .handle import ModuleHandle
from .iothub import IotHubDeployer
from .native import NativeDeployer
from .service import ServiceSpec

DEFAULT_METHOD = "native"


class Deployer(Protocol):
    def deploy(self, service: ServiceSpec | None = None) -> ModuleHandle: ...


@dataclass(frozen=True)
class DeployTarget:
    """What a deployer is for: the board, the module folder, the board's lab.yaml settings it may need, and the
    run folder (where a deployer keeps what it sent, e.g. the IoT Edge manifest)."""

    board: Board
    module_dir: Path
    iothub: IotHubConfig | None = None
    run_dir: Path | None = None


#: method name -> what makes its deployer for a target
DEPLOYERS: dict[str, Callable[[DeployTarget], Deployer]] = {
    "native": lambda t: NativeDeployer(t.board, t.module_dir),
    "docker": lambda t: DockerDeployer(t.board, module_dir=t.module_dir),
    "iothub": lambda t: IotHubDeployer(t.board, t.module_dir, t.iothub, t.run_dir),
}


def deployer_for(method: str, target: DeployTarget) -> Deployer:
    if method not in DEPLOYERS:
        raise ConfigError("--deploy", method, f"unknown deploy method; choose from {', '.join(DEPLOYERS)}")
    return DEPLOYERS[method](target)

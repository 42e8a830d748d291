"""How the suites deploy the module: one small interface, a deployer per method (`--deploy`, or per board in
lab.yaml). Every deployer returns a `ModuleHandle`, which is all the suites use of a deployed module: its API
(health, info), a module command run where the module runs, logs, stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from harness.board import Board
from harness.errors import ConfigError

from .docker import DockerDeployer
from .handle import ModuleHandle
from .native import NativeDeployer
from .service import ServiceSpec

DEFAULT_METHOD = "native"


class Deployer(Protocol):
    def deploy(self, service: ServiceSpec | None = None) -> ModuleHandle: ...


#: method name -> what makes its deployer for a board and a module folder
DEPLOYERS: dict[str, Callable[[Board, Path], Deployer]] = {
    "native": lambda board, module_dir: NativeDeployer(board, module_dir),
    "docker": lambda board, module_dir: DockerDeployer(board, module_dir=module_dir),
}


def deployer_for(method: str, board: Board, module_dir: Path) -> Deployer:
    if method not in DEPLOYERS:
        raise ConfigError("--deploy", method, f"unknown deploy method; choose from {', '.join(DEPLOYERS)}")
    return DEPLOYERS[method](board, module_dir)

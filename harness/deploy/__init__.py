"""Deploy the reference module to a board and get a handle on it (native over SSH; docker next)."""

from .handle import DeployReport, ModuleHandle
from .native import NativeDeployer, deploy_native
from .service import ServiceSpec

__all__ = ["DeployReport", "ModuleHandle", "NativeDeployer", "ServiceSpec", "deploy_native"]

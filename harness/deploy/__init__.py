"""Deploy the reference module to a board and get a handle on it: native over SSH or a Docker image (methods)."""

from .docker import DockerDeployer, DockerModuleHandle, ImageRecipe, deploy_docker
from .handle import DeployReport, ModuleHandle
from .native import NativeDeployer, deploy_native
from .service import ServiceSpec

__all__ = [
    "DeployReport", "DockerDeployer", "DockerModuleHandle", "ImageRecipe", "ModuleHandle", "NativeDeployer",
    "ServiceSpec", "deploy_docker", "deploy_native",
]

"""Inference backends behind one interface; ``create_backend`` picks and opens one."""

import importlib
import os
from pathlib import Path
from typing import Dict, Optional, Union

from ..calibration import calibration_set
from ..errors import BackendUnavailable, ModuleError
from ..model import ModelInfo
from .base import Backend

# name -> (python module that must import, backend implementation module, calibrates int8 on images)
_BACKENDS = {
    "tensorrt": ("tensorrt", ".tensorrt", True),
    "onnxruntime": ("onnxruntime", ".onnxruntime", True),
    "torch": ("onnx2torch", ".torch", False),  # explicit only: CUDA where TensorRT is not installed
}
PRECISIONS = ("fp32", "fp16", "int8")


def _missing(name: str) -> Optional[str]:
    """Why backend ``name`` cannot run here, or None; imports only that backend's package."""
    requirement = _BACKENDS[name][0]
    try:
        importlib.import_module(requirement)
    except ImportError as exc:
        return f"python package '{requirement}' is not installed ({exc})"
    except Exception as exc:  # installed but broken: a half-installed TensorRT raises OSError from its libraries
        said = (str(exc).strip().splitlines() or [""])[0]
        return f"python package '{requirement}' does not import ({type(exc).__name__}: {said})"
    return None


def available_backends() -> Dict[str, Optional[str]]:
    """Each backend's name → None when usable here, else why not (shown by ``python -m module info``)."""
    return {name: _missing(name) for name in _BACKENDS}


#: present on every Jetson (L4T): there `auto` means TensorRT, and ONNX Runtime on the CPU only when asked for
JETSON_RELEASE_FILE = "/etc/nv_tegra_release"


def _auto() -> str:
    """TensorRT where it imports; elsewhere ONNX Runtime, except on a Jetson, where that would be another
    measurement (the CPU, not the GPU) passed off as the board's."""
    missing = _missing("tensorrt")
    if missing is None:
        return "tensorrt"
    if os.path.exists(JETSON_RELEASE_FILE):
        raise BackendUnavailable(
            f"backend 'auto' on a Jetson ({JETSON_RELEASE_FILE}) needs TensorRT: {missing}; "
            "install python3-libnvinfer, or choose --backend onnxruntime to run on the CPU")
    return "onnxruntime"


def create_backend(
    name: str,
    model: ModelInfo,
    *,
    precision: str = "fp32",
    batch: int = 1,
    device: str = "auto",
    calib_images: Union[str, Path, None] = None,
    **options: object,
) -> Backend:
    """Open ``name`` ('auto' = TensorRT where installed; elsewhere ONNX Runtime, but never on a Jetson) for ``model``.

    ``calib_images`` feeds the INT8 calibration of TensorRT and ONNX Runtime (see ``module.calibration``).
    """
    if precision not in PRECISIONS:
        raise ModuleError("unknown precision '{}': choose one of {}".format(precision, ", ".join(PRECISIONS)))
    if batch < 1:
        raise ModuleError(f"batch must be >= 1, got {batch}")
    if name == "auto":
        name = _auto()
    if name not in _BACKENDS:
        raise ModuleError("unknown backend '{}': choose auto, {}".format(name, ", ".join(_BACKENDS)))
    missing = _missing(name)
    if missing is not None:
        raise BackendUnavailable(f"backend '{name}' is not available here: {missing}")
    calibrates = _BACKENDS[name][2]
    if calibrates and precision == "int8":
        options["calibration"] = calibration_set(model, calib_images)
    elif calib_images is not None:
        raise ModuleError("--calib-images is for --precision int8 on the tensorrt or onnxruntime backend only")
    implementation = importlib.import_module(_BACKENDS[name][1], __name__)
    return implementation.open_backend(model, precision=precision, batch=batch, device=device, **options)


__all__ = ["PRECISIONS", "Backend", "available_backends", "create_backend"]

"""Inference backends behind one interface; ``create_backend`` picks and opens one."""

from __future__ import annotations

import importlib
from pathlib import Path

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


def _missing(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None; imports only that backend's package."""
    requirement = _BACKENDS[name][0]
    try:
        importlib.import_module(requirement)
    except ImportError as exc:
        return f"python package '{requirement}' is not installed ({exc})"
    return None


def available_backends() -> dict[str, str | None]:
    """Each backend's name → None when usable here, else why not (shown by ``python -m module info``)."""
    return {name: _missing(name) for name in _BACKENDS}


def create_backend(
    name: str,
    model: ModelInfo,
    *,
    precision: str = "fp32",
    batch: int = 1,
    device: str = "auto",
    calib_images: str | Path | None = None,
    **options: object,
) -> Backend:
    """Open ``name`` ('auto' = TensorRT where installed, else ONNX Runtime) for ``model``.

    ``calib_images`` feeds the INT8 calibration of TensorRT and ONNX Runtime (see ``module.calibration``).
    """
    if precision not in PRECISIONS:
        raise ModuleError("unknown precision '{}': choose one of {}".format(precision, ", ".join(PRECISIONS)))
    if batch < 1:
        raise ModuleError(f"batch must be >= 1, got {batch}")
    if name == "auto":
        name = "tensorrt" if _missing("tensorrt") is None else "onnxruntime"
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

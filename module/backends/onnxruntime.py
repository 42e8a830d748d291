"""ONNX Runtime backend: CPU everywhere (virtual boards, CI), CUDA where onnxruntime-gpu has a GPU.

FP32 runs the ONNX graph as exported; FP16 and INT8 run it converted by ONNX Runtime's own tools
(``ort_precision``), so reduced precisions are real wherever ONNX Runtime runs, TensorRT or not.
"""

import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import onnxruntime as ort

from ..calibration import CalibrationSet
from ..errors import BackendUnavailable, ModelError, ModuleError
from ..model import ModelInfo, labels_from_metadata
from .base import Backend
from .engine_cache import DEFAULT_DIR
from .ort_precision import QUANTIZERS, reduced_model

_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def _spatial(shape: list, model: ModelInfo) -> Tuple[int, int]:
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[2:]):
        raise ModelError(
            f"{model.path}: input shape {shape} is not [batch, 3, H, W] with fixed H and W; "
            "export with a fixed image size"
        )
    return int(shape[2]), int(shape[3])


class OnnxRuntimeBackend(Backend):
    """Runs the ONNX graph as exported at FP32, or converted by ONNX Runtime's tools at FP16/INT8."""

    name = "onnxruntime"
    quantizers = QUANTIZERS

    def __init__(
        self,
        model: ModelInfo,
        *,
        precision: str,
        batch: int,
        device: str,
        threads: Optional[int] = None,
        calibration: Optional[CalibrationSet] = None,
    ):
        self._accept(precision)
        available = ort.get_available_providers()
        wanted = "cuda" if device == "auto" and "CUDAExecutionProvider" in available else device
        if wanted == "auto":
            wanted = "cpu"
        if wanted not in _PROVIDERS:
            raise ModuleError(f"unknown device '{device}' for onnxruntime: choose auto, cpu or cuda")
        if _PROVIDERS[wanted][0] not in available:
            raise BackendUnavailable(
                "onnxruntime here has no {} (providers: {}); install onnxruntime-gpu".format(
                    _PROVIDERS[wanted][0], ", ".join(available)
                )
            )
        self._options = ort.SessionOptions()
        self._options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._providers = _PROVIDERS[wanted]
        self._session = self._open(model.path, model)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{model.path}: expected one image input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_hw = _spatial(list(inputs[0].shape), model)
        self.metadata_labels = labels_from_metadata(self._session.get_modelmeta().custom_metadata_map)
        if precision != "fp32":
            converted = reduced_model(model, precision, ort_version=ort.__version__, cache_dir=DEFAULT_DIR,
                                      input_name=self.input_name, input_hw=self.input_hw, calibration=calibration)
            self._session = self._open(converted, model)
        fixed_batch = inputs[0].shape[0]
        if isinstance(fixed_batch, int) and fixed_batch > 0 and batch > fixed_batch:
            raise ModelError(
                f"{model.path}: exported with a fixed batch of {fixed_batch}; "
                f"re-export with a dynamic batch axis for --batch {batch}"
            )
        self._output_name = outputs[0].name
        self.output_shape = tuple(outputs[0].shape)
        self.max_batch = batch
        self.precision = precision
        self.device = wanted

    def _open(self, path: Path, model: ModelInfo) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(path), sess_options=self._options, providers=self._providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelError(f"{model.path}: onnxruntime cannot load it: {str(exc).splitlines()[0]}") from None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self.input_name: batch})[0]

    def versions(self) -> Dict[str, str]:
        return {"onnxruntime": ort.__version__}

    def close(self) -> None:
        self._session = None


def open_backend(model: ModelInfo, **options: object) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, **options)

"""PyTorch backend on CUDA: for boards (and GPU hosts) with PyTorch but without TensorRT bindings.

The ONNX graph is converted once with onnx2torch; FP16 runs the converted module in half
precision. It exists so the CUDA path can run where TensorRT cannot be installed; TensorRT stays
the backend for measured Jetson figures.
"""

from typing import Dict

import numpy as np
import onnx
import torch
from onnx2torch import convert

from ..errors import BackendUnavailable, ModelError, ModuleError
from ..model import ModelInfo, labels_from_metadata
from .base import Backend

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class TorchBackend(Backend):
    """The ONNX model as a torch.fx module on one CUDA device, fed from pinned host memory."""

    name = "torch"
    quantizers = {"fp32": None, "fp16": "torch-half"}

    def __init__(self, model: ModelInfo, *, precision: str, batch: int, device: str):
        self._accept(precision)
        if device not in ("auto", "cuda"):
            raise ModuleError(f"the torch backend runs on cuda only, not '{device}'")
        if not torch.cuda.is_available():
            raise BackendUnavailable("the torch backend needs a CUDA GPU; torch sees none here")
        try:
            graph = onnx.load(str(model.path))
        except Exception as exc:  # onnx raises DecodeError and friends
            raise ModelError(f"{model.path}: not a readable ONNX file ({exc})") from None
        dims = [d.dim_value or None for d in graph.graph.input[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[2] is None or dims[3] is None:
            raise ModelError(f"{model.path}: input {dims} is not [batch, 3, H, W] with fixed H and W")
        out_dims = [d.dim_value or d.dim_param for d in graph.graph.output[0].type.tensor_type.shape.dim]
        self.metadata_labels = labels_from_metadata({p.key: p.value for p in graph.metadata_props})
        self._device = torch.device("cuda")
        self._dtype = _DTYPES[precision]
        self._net = convert(graph).eval().to(self._device, self._dtype)
        self.input_name = graph.graph.input[0].name
        self.input_hw = (int(dims[2]), int(dims[3]))
        self.output_shape = tuple(out_dims)
        self.max_batch, self.precision = batch, precision
        self.device = f"cuda:0 {torch.cuda.get_device_name(0)}"
        self._staging = torch.zeros((batch, 3, *self.input_hw), dtype=torch.float32).pin_memory()
        self._input = torch.zeros((batch, 3, *self.input_hw), dtype=self._dtype, device=self._device)
        with torch.inference_mode():
            # TorchScript runs the converted graph without Python dispatch per layer
            self._net = torch.jit.trace(self._net, self._input, check_trace=False)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        self._staging.numpy()[:n] = batch
        with torch.inference_mode():
            self._input.copy_(self._staging, non_blocking=True)  # rows past n keep old data; only [:n] is read
            return self._net(self._input)[:n].float().cpu().numpy()

    def versions(self) -> Dict[str, str]:
        return {"torch": torch.__version__, "cuda": str(torch.version.cuda)}

    def close(self) -> None:
        self._net = None
        torch.cuda.empty_cache()


def open_backend(model: ModelInfo, **options: object) -> TorchBackend:
    return TorchBackend(model, **options)

"""The interface every inference backend implements."""

from abc import ABC, abstractmethod
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ModuleError


class Backend(ABC):
    """A loaded engine: feed an NCHW float32 batch, get the raw detector output back.

    Attributes the pipeline and bench read: ``name``, ``precision``, ``device`` (what actually runs
    it, e.g. 'cpu', 'cuda:0 NVIDIA H100'), ``input_name``, ``input_hw``, ``max_batch`` and
    ``output_shape`` (batch first, with the engine's batch dimension as built).
    """

    name: str
    precision: str
    device: str
    input_name: str
    input_hw: Tuple[int, int]
    max_batch: int
    output_shape: tuple
    #: class names the model file itself carries (Ultralytics ONNX metadata), when it does
    metadata_labels: Optional[Tuple[str, ...]] = None
    #: the serialized engine file this backend runs, where it builds one (TensorRT): the harness runs trtexec on it
    engine_path: Optional[str] = None
    #: each precision this backend runs → what reduces the model to it (None: the model as exported);
    #: other precisions are refused when it opens; /info, the bench and the results report them
    quantizers: Dict[str, Optional[str]] = {"fp32": None}

    @property
    def precisions(self) -> Tuple[str, ...]:
        return tuple(self.quantizers)

    @property
    def quantizer(self) -> Optional[str]:
        """What made the model this backend runs (None for the exported FP32 graph)."""
        return self.quantizers.get(self.precision)

    def _accept(self, precision: str) -> None:
        if precision not in self.quantizers:
            raise ModuleError(
                "the {} backend runs {}, not {}".format(self.name, ", ".join(self.quantizers), precision)
            )

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (``[n, 3, H, W]`` float32, n <= max_batch) and return ``[n, ...]`` float32."""

    def versions(self) -> Dict[str, str]:
        """Library versions that identify this backend in results (overridden where known)."""
        return {}

    @abstractmethod
    def close(self) -> None:
        """Release engine and device memory (idempotent)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

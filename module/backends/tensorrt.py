"""TensorRT backend: engine built on the board from the ONNX, cached, run with the name-based API.

One code path covers TensorRT 8.5 (JetPack 5) through 10.x (JetPack 6): only the tensor-name API
(``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``, ``build_serialized_network``,
``set_memory_pool_limit``) is used; the explicit-batch flag is passed only below 10.0 and the
FP16/INT8 builder flags only where they exist (TensorRT 11 dropped them).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorrt as trt

from ..calibration import CalibrationSet
from ..errors import BackendUnavailable, ModelError, ModuleError
from ..model import ModelInfo
from .base import Backend
from .engine_cache import DEFAULT_DIR, engine_key, engine_path, timing_cache_path

try:  # cuda-python moved its modules in 12.x/13.x
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    try:
        from cuda import cudart
    except ImportError:
        cudart = None

log = logging.getLogger("module.tensorrt")
TRT_MAJOR = int(trt.__version__.split(".")[0])
KNOWN_BAD = {"10.1.0": "TensorRT 10.1.0 builds wrong engines for some ONNX graphs; use another release"}
WORKSPACE_BYTES = 1 << 30


def _check(result: tuple) -> object:
    """cuda-python returns (err, value...); raise on error, return the value(s)."""
    err, *values = result
    if int(err) != 0:
        raise ModuleError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else tuple(values)


class _Buffer:
    """Pinned host memory viewed as numpy plus a device allocation of the same size."""

    def __init__(self, shape: tuple, dtype: np.dtype):
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.host_ptr = _check(cudart.cudaMallocHost(self.nbytes))
        array_type = ctypes.c_byte * self.nbytes
        self.host = np.frombuffer(array_type.from_address(int(self.host_ptr)), dtype=dtype).reshape(shape)
        self.device = _check(cudart.cudaMalloc(self.nbytes))

    def free(self) -> None:
        cudart.cudaFree(self.device)
        cudart.cudaFreeHost(self.host_ptr)


def _gpu_name() -> str:
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.split("\x00")[0] or "gpu"


def _calibrator(batches: Iterator[np.ndarray], batch: int, input_chw: tuple, cache: Path) -> object:
    """An entropy calibrator fed with letterboxed images, its cache kept beside the engine.

    The class is made only when INT8 is asked for: releases without implicit quantization (11.x)
    have no calibrator base class, and the backend must still import there for FP32. Those releases
    never get here: the missing INT8 builder flag is refused first.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._buffer: _Buffer | None = None  # only when batches are read: a cache hit needs none

        def release(self) -> None:
            if self._buffer is not None:
                self._buffer.free()
                self._buffer = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list) -> list | None:
            data = next(batches, None)
            if data is None:
                return None
            if self._buffer is None:
                self._buffer = _Buffer((batch, *input_chw), np.float32)
            self._buffer.host[...] = data
            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(cudart.cudaMemcpy(self._buffer.device, self._buffer.host_ptr, self._buffer.nbytes, h2d))
            return [int(self._buffer.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def _progress(label: str, stop: threading.Event, every_s: float = 10.0) -> None:
    """Engine builds take minutes on a Jetson: say that it is still working."""
    started = time.monotonic()
    while not stop.wait(every_s):
        print(f"{label}: still building ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


def build_engine(
    model: ModelInfo,
    logger: trt.Logger,
    *,
    precision: str,
    batch: int,
    timing_cache: Path,
    calibration: CalibrationSet | None,
    calibration_cache: Path,
) -> bytes:
    """Parse the ONNX and build a serialized engine with a dynamic-batch profile up to ``batch``."""
    builder = trt.Builder(logger)
    flags = 0 if TRT_MAJOR >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{model.path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    tensor = network.get_input(0)
    chw = tuple(tensor.shape[1:])
    if tensor.shape[0] == -1:
        profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, (1, *chw), (batch, *chw), (batch, *chw))
        config.add_optimization_profile(profile)
        if precision == "int8":
            config.set_calibration_profile(profile)
    elif batch > tensor.shape[0]:
        raise ModelError(f"{model.path}: fixed batch {tensor.shape[0]} < --batch {batch}")
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), True)
    if precision in ("fp16", "int8"):
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ModuleError(f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (strongly typed only)")
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; the %s engine may be slow", precision)
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibration is None:
            raise ModuleError("int8 needs calibration images: pass --calib-images DIR")
        config.int8_calibrator = _calibrator(calibration.batches((batch, *chw)), batch, chw, calibration_cache)
    label = f"building TensorRT {precision} engine for {model.path.name} (batch {batch})"
    print(label + " — this runs once per model, GPU and TensorRT version", file=sys.stderr, flush=True)
    stop = threading.Event()
    ticker = threading.Thread(target=_progress, args=(label, stop), daemon=True)
    ticker.start()
    started = time.monotonic()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        stop.set()
        if precision == "int8":
            config.int8_calibrator.release()  # pinned and device memory: shared DRAM on a Jetson
    if serialized is None:
        raise ModuleError(f"TensorRT failed to build the engine for {model.path} (see the TensorRT log above)")
    timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    print(f"{label}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return bytes(serialized)


class TensorRTBackend(Backend):
    """Deserializes (or builds and caches) an engine and runs it on one CUDA stream."""

    name = "tensorrt"
    quantizers = {"fp32": None, "fp16": "tensorrt-fp16", "int8": "tensorrt-int8-entropy"}

    def __init__(
        self,
        model: ModelInfo,
        *,
        precision: str,
        batch: int,
        device: str,
        calibration: CalibrationSet | None = None,
    ):
        if cudart is None:
            raise BackendUnavailable("the tensorrt backend needs cuda-python (pip install cuda-python)")
        if device not in ("auto", "cuda"):
            raise ModuleError(f"the tensorrt backend runs on cuda only, not '{device}'")
        if trt.__version__ in KNOWN_BAD:
            raise BackendUnavailable(KNOWN_BAD[trt.__version__])
        gpu = _gpu_name()
        cache_dir = DEFAULT_DIR
        cache_dir.mkdir(parents=True, exist_ok=True)
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        key = engine_key(
            model.sha256, trt.__version__, gpu, precision, batch, calibration.digest if calibration else ""
        )
        path = engine_path(cache_dir, key)
        if model.path.suffix == ".engine":
            path = model.path
        elif not path.is_file():
            serialized = build_engine(
                model,
                logger,
                precision=precision,
                batch=batch,
                timing_cache=timing_cache_path(cache_dir, trt.__version__, gpu),
                calibration=calibration,
                calibration_cache=cache_dir / (key + ".calib"),
            )
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(serialized)
            tmp.replace(path)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModuleError(f"cannot load engine {path}: delete it to rebuild")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        self.input_name, self._output_name = inputs[0], outputs[0]
        in_shape = tuple(self._engine.get_tensor_shape(self.input_name))
        self.input_hw = (int(in_shape[2]), int(in_shape[3]))
        self.max_batch = batch
        self.precision, self.device = precision, f"cuda:0 {gpu}"
        self._stream = _check(cudart.cudaStreamCreate())
        self._context.set_input_shape(self.input_name, (batch, *in_shape[1:]))
        out_shape = tuple(self._context.get_tensor_shape(self._output_name))
        self.output_shape = out_shape
        self._in = _Buffer((batch, *in_shape[1:]), np.float32)
        out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output_name)))
        self._out = _Buffer(out_shape, out_dtype)
        self._context.set_tensor_address(self.input_name, int(self._in.device))
        self._context.set_tensor_address(self._output_name, int(self._out.device))
        self._bound = batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if n != self._bound:
            self._context.set_input_shape(self.input_name, (n, *batch.shape[1:]))
            self._bound = n
        self._in.host[:n] = batch
        nbytes_in = batch.nbytes
        out_rows = self._out.host[:n]
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._in.device, self._in.host_ptr, nbytes_in, h2d, self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise ModuleError("TensorRT execution failed")
        _check(cudart.cudaMemcpyAsync(self._out.host_ptr, self._out.device, out_rows.nbytes, d2h, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return out_rows.astype(np.float32, copy=True)

    def versions(self) -> dict[str, str]:
        return {"tensorrt": trt.__version__}

    def close(self) -> None:
        if getattr(self, "_in", None) is not None:
            self._in.free()
            self._out.free()
            cudart.cudaStreamDestroy(self._stream)
            self._in = self._out = None
        self._context = self._engine = None


def open_backend(model: ModelInfo, **options: object) -> TensorRTBackend:
    return TensorRTBackend(model, **options)

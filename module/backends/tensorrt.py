"""TensorRT backend: engine built on the board from the ONNX, cached, run on one CUDA stream.

One backend for TensorRT 7.1 (JetPack 4) through 10.x (JetPack 6); the release picks the API generation:

- I/O: below 8.5 binding indices (``num_bindings``, ``set_binding_shape``, ``execute_async_v2``), from 8.5
  tensor names (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), the
  only API left in 10.x. Each generation is one small class behind the same interface (``_BindingIO``,
  ``_TensorIO``), chosen once by version, never by probing for attributes: a call of the wrong generation
  fails loudly with AttributeError.
- Build: ``builder.build_engine`` + ``engine.serialize()`` below 8.0, ``build_serialized_network`` from 8.0;
  the workspace through ``max_workspace_size`` below 8.4, ``set_memory_pool_limit`` from 8.4; the timing
  cache from 8.0; the explicit-batch flag below 10.0 only; the FP16/INT8 builder flags where they exist
  (TensorRT 11 dropped them).

CUDA memory, copies and the stream go through ``cudart`` (ctypes on the libcudart that JetPack ships).
This file runs on JetPack 4's Python 3.6: no postponed annotations, no ``X | None``, no builtin generics.
"""

import ctypes
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorrt as trt

from ..calibration import CalibrationSet
from ..errors import BackendUnavailable, ModelError, ModuleError
from ..model import ModelInfo
from . import cudart
from .base import Backend
from .engine_cache import DEFAULT_DIR, engine_key, engine_path, timing_cache_path

log = logging.getLogger("module.tensorrt")
KNOWN_BAD = {"10.1.0": "TensorRT 10.1.0 builds wrong engines for some ONNX graphs; use another release"}
WORKSPACE_BYTES = 1 << 30


def trt_release(version: str) -> Tuple[int, int]:
    """``'8.5.2.2'`` → ``(8, 5)``: the (major, minor) that decides the API generation."""
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]]
    return tuple(numbers + [0] * (2 - len(numbers)))


TRT_VERSION = trt_release(trt.__version__)
#: first releases with each API (NVIDIA's Python bindings)
SERIALIZED_BUILD = (8, 0)  # build_serialized_network, the timing cache
MEMORY_POOLS = (8, 4)  # set_memory_pool_limit replaces max_workspace_size (gone in 10.0)
TENSOR_API = (8, 5)  # I/O tensors by name; the binding-index API is gone in 10.0
ALWAYS_EXPLICIT_BATCH = (10, 0)  # no EXPLICIT_BATCH flag needed (deprecated and ignored)


class _Buffer:
    """Pinned host memory viewed as numpy plus a device allocation of the same size."""

    def __init__(self, cuda: cudart.CudaRuntime, shape: tuple, dtype: np.dtype):
        self._cuda = cuda
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.host_ptr = cuda.malloc_host(self.nbytes)
        try:
            self.device = cuda.malloc(self.nbytes)
        except ModuleError:
            cuda.free_host(self.host_ptr)
            raise
        array_type = ctypes.c_byte * self.nbytes
        self.host = np.frombuffer(array_type.from_address(self.host_ptr), dtype=dtype).reshape(shape)

    def free(self) -> None:
        self.host = None  # the view must not outlive the memory
        self._cuda.free(self.device)
        self._cuda.free_host(self.host_ptr)


class _EngineIO:
    """The engine's first input and first output, in one API generation.

    ``input_name``, ``output_name``, ``input_shape`` (as built, -1 for a dynamic batch) and ``output_dtype``;
    then ``set_batch`` / ``output_shape`` / ``bind`` / ``execute`` on the execution context.
    """

    input_name = ""
    output_name = ""
    input_shape = ()  # type: Tuple[int, ...]
    output_dtype = np.dtype(np.float32)

    def set_batch(self, n: int) -> None:
        """Bind the input shape ``(n, *input_shape[1:])``."""
        raise NotImplementedError

    def output_shape(self) -> tuple:
        """The output's shape for the input shape bound last."""
        raise NotImplementedError

    def bind(self, input_address: int, output_address: int) -> None:
        raise NotImplementedError

    def execute(self, stream: int) -> bool:
        """Queue the engine on ``stream`` (after the copies queued before it)."""
        raise NotImplementedError

    def _refused(self, n: int) -> ModuleError:
        return ModuleError(f"TensorRT refused input shape {(n, *self.input_shape[1:])} for {self.input_name}")


class _TensorIO(_EngineIO):
    """TensorRT >= 8.5: I/O tensors by name."""

    def __init__(self, engine: "trt.ICudaEngine", context: "trt.IExecutionContext"):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        outputs = [name for name in names if name not in inputs]
        self._context = context
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_shape = tuple(engine.get_tensor_shape(self.input_name))
        self.output_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.output_name)))

    def set_batch(self, n: int) -> None:
        if not self._context.set_input_shape(self.input_name, (n, *self.input_shape[1:])):
            raise self._refused(n)

    def output_shape(self) -> tuple:
        return tuple(self._context.get_tensor_shape(self.output_name))

    def bind(self, input_address: int, output_address: int) -> None:
        self._context.set_tensor_address(self.input_name, input_address)
        self._context.set_tensor_address(self.output_name, output_address)

    def execute(self, stream: int) -> bool:
        return self._context.execute_async_v3(stream)


class _BindingIO(_EngineIO):
    """TensorRT < 8.5: binding indices, one device pointer per binding."""

    def __init__(self, engine: "trt.ICudaEngine", context: "trt.IExecutionContext"):
        indices = range(engine.num_bindings)
        inputs = [i for i in indices if engine.binding_is_input(i)]
        outputs = [i for i in indices if i not in inputs]
        self._context = context
        self._input, self._output = inputs[0], outputs[0]
        self._bindings = [0] * len(indices)  # type: List[int]
        self.input_name = engine.get_binding_name(self._input)
        self.output_name = engine.get_binding_name(self._output)
        self.input_shape = tuple(engine.get_binding_shape(self._input))
        self.output_dtype = np.dtype(trt.nptype(engine.get_binding_dtype(self._output)))

    def set_batch(self, n: int) -> None:
        if not self._context.set_binding_shape(self._input, (n, *self.input_shape[1:])):
            raise self._refused(n)

    def output_shape(self) -> tuple:
        return tuple(self._context.get_binding_shape(self._output))

    def bind(self, input_address: int, output_address: int) -> None:
        self._bindings[self._input] = input_address
        self._bindings[self._output] = output_address

    def execute(self, stream: int) -> bool:
        return self._context.execute_async_v2(bindings=self._bindings, stream_handle=stream)


def engine_io(engine: "trt.ICudaEngine", context: "trt.IExecutionContext") -> _EngineIO:
    """The I/O of this TensorRT release's generation."""
    return _TensorIO(engine, context) if TRT_VERSION >= TENSOR_API else _BindingIO(engine, context)


def _calibrator(
    cuda: cudart.CudaRuntime, batches: Iterator[np.ndarray], batch: int, input_chw: tuple, cache: Path
) -> object:
    """An entropy calibrator fed with letterboxed images, its cache kept beside the engine.

    The class is made only when INT8 is asked for: releases without implicit quantization (11.x)
    have no calibrator base class, and the backend must still import there for FP32. Those releases
    never get here: the missing INT8 builder flag is refused first.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._buffer = None  # type: Optional[_Buffer]  # only when batches are read: a cache hit needs none

        def release(self) -> None:
            if self._buffer is not None:
                self._buffer.free()
                self._buffer = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            data = next(batches, None)
            if data is None:
                return None
            if self._buffer is None:
                self._buffer = _Buffer(cuda, (batch, *input_chw), np.float32)
            self._buffer.host[...] = data
            cuda.memcpy(self._buffer.device, self._buffer.host_ptr, self._buffer.nbytes, cudart.HOST_TO_DEVICE)
            return [self._buffer.device]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def _progress(label: str, stop: threading.Event, every_s: float = 10.0) -> None:
    """Engine builds take minutes on a Jetson: say that it is still working."""
    started = time.monotonic()
    while not stop.wait(every_s):
        print(f"{label}: still building ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


def _create_network(builder: "trt.Builder") -> "trt.INetworkDefinition":
    if TRT_VERSION >= ALWAYS_EXPLICIT_BATCH:
        return builder.create_network(0)
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))


def _limit_workspace(config: "trt.IBuilderConfig") -> None:
    if TRT_VERSION >= MEMORY_POOLS:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    else:
        config.max_workspace_size = WORKSPACE_BYTES


def _build_serialized(builder: "trt.Builder", network: "trt.INetworkDefinition", config: object) -> Optional[bytes]:
    """The serialized engine, or None where TensorRT failed (it says why in its log)."""
    if TRT_VERSION >= SERIALIZED_BUILD:
        serialized = builder.build_serialized_network(network, config)
        return None if serialized is None else bytes(serialized)
    engine = builder.build_engine(network, config)
    return None if engine is None else bytes(engine.serialize())


def build_engine(
    cuda: cudart.CudaRuntime,
    model: ModelInfo,
    logger: "trt.Logger",
    *,
    precision: str,
    batch: int,
    timing_cache: Path,
    calibration: Optional[CalibrationSet],
    calibration_cache: Path,
) -> bytes:
    """Parse the ONNX and build a serialized engine with a dynamic-batch profile up to ``batch``."""
    builder = trt.Builder(logger)
    network = _create_network(builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{model.path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    _limit_workspace(config)
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
    if TRT_VERSION >= SERIALIZED_BUILD:  # no timing cache API before 8.0
        cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cache_bytes), True)
    if precision in ("fp16", "int8"):
        # a feature test, not a generation test: TensorRT 11 removed these flags (strongly typed networks only)
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ModuleError(f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (strongly typed only)")
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; the %s engine may be slow", precision)
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibration is None:
            raise ModuleError("int8 needs calibration images: pass --calib-images DIR")
        config.int8_calibrator = _calibrator(cuda, calibration.batches((batch, *chw)), batch, chw, calibration_cache)
    label = f"building TensorRT {precision} engine for {model.path.name} (batch {batch})"
    print(label + " — this runs once per model, GPU and TensorRT version", file=sys.stderr, flush=True)
    stop = threading.Event()
    ticker = threading.Thread(target=_progress, args=(label, stop), daemon=True)
    ticker.start()
    started = time.monotonic()
    try:
        serialized = _build_serialized(builder, network, config)
    finally:
        stop.set()
        if precision == "int8":
            config.int8_calibrator.release()  # pinned and device memory: shared DRAM on a Jetson
    if serialized is None:
        raise ModuleError(f"TensorRT failed to build the engine for {model.path} (see the TensorRT log above)")
    if TRT_VERSION >= SERIALIZED_BUILD:
        timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    print(f"{label}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return serialized


class TensorRTBackend(Backend):
    """Deserializes (or builds and caches) an engine and runs it on one CUDA stream."""

    name = "tensorrt"
    quantizers = {"fp32": None, "fp16": "tensorrt-fp16", "int8": "tensorrt-int8-entropy"}

    def __init__(
        self, model: ModelInfo, *, precision: str, batch: int, device: str, calibration: Optional[CalibrationSet] = None
    ):
        if device not in ("auto", "cuda"):
            raise ModuleError(f"the tensorrt backend runs on cuda only, not '{device}'")
        if trt.__version__ in KNOWN_BAD:
            raise BackendUnavailable(KNOWN_BAD[trt.__version__])
        self._cuda = cuda = cudart.runtime()  # BackendUnavailable without a libcudart
        gpu = cuda.device_name(0)
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
                cuda,
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
        self.engine_path = str(path)  # trtexec runs this very engine as the limit of the module's raw figure
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModuleError(f"cannot load engine {path}: delete it to rebuild")
        self._context = self._engine.create_execution_context()
        self._io = io = engine_io(self._engine, self._context)
        self.input_name = io.input_name
        self.input_hw = (int(io.input_shape[2]), int(io.input_shape[3]))
        self.max_batch = batch
        self.precision, self.device = precision, f"cuda:0 {gpu}"
        io.set_batch(batch)
        self.output_shape = io.output_shape()
        self._stream = self._in = self._out = None  # type: Optional[int], Optional[_Buffer], Optional[_Buffer]
        try:  # a Nano's shared memory can run out here: free what was taken before the error goes up
            self._stream = cuda.stream_create()
            self._in = _Buffer(cuda, (batch, *io.input_shape[1:]), np.float32)
            self._out = _Buffer(cuda, self.output_shape, io.output_dtype)
        except Exception:
            self.close()
            raise
        io.bind(self._in.device, self._out.device)
        self._bound = batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if n != self._bound:
            self._io.set_batch(n)
            self._bound = n
        cuda = self._cuda
        self._in.host[:n] = batch
        out_rows = self._out.host[:n]
        cuda.memcpy_async(self._in.device, self._in.host_ptr, batch.nbytes, cudart.HOST_TO_DEVICE, self._stream)
        if not self._io.execute(self._stream):
            raise ModuleError("TensorRT execution failed")
        cuda.memcpy_async(self._out.host_ptr, self._out.device, out_rows.nbytes, cudart.DEVICE_TO_HOST, self._stream)
        cuda.stream_synchronize(self._stream)
        return out_rows.astype(np.float32, copy=True)

    def versions(self) -> Dict[str, str]:
        return {"tensorrt": trt.__version__, "cuda_runtime": self._cuda.version()}

    def close(self) -> None:
        for buffer in (getattr(self, "_in", None), getattr(self, "_out", None)):
            if buffer is not None:
                buffer.free()
        if getattr(self, "_stream", None) is not None:
            self._cuda.stream_destroy(self._stream)
        self._in = self._out = self._stream = None
        self._context = self._engine = None


def open_backend(model: ModelInfo, **options: object) -> TensorRTBackend:
    return TensorRTBackend(model, **options)

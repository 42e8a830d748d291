"""TensorRT's Python API, as far as module/backends/tensorrt.py uses it, running networks on ONNX Runtime.

See ../README.md. ``FAKE_TENSORRT_VERSION`` picks the release; each class, method, property and enum
member below carries the releases it exists in (``@_api(since=..., until=...)``), and whatever this
release lacks is deleted after the class is made, so a call from the wrong API generation raises
AttributeError as it would with NVIDIA's bindings. Like pybind11 objects, these refuse an attribute
their class does not define (``config.max_workspace_size = ...`` on 10.x raises instead of sticking).

The rules the module relies on are kept: before 10.0 an ONNX network needs the explicit-batch flag, a
dynamic batch needs an optimization profile, INT8 needs a calibrator that hands over whole batches,
an engine loads only in the release that built it, and execution follows the copies queued before it
on the CUDA stream (that of the libcudart the process loaded: tests/module/fake_cudart in tests).

Names that the public API of these classes shows are NVIDIA's (checked against the real bindings by
tests/module/test_tensorrt_api_names.py); the fake's own state is private (underscored).
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# numpy, onnx and ONNX Runtime are imported where used: like NVIDIA's package, this one imports on a board's
# python3 without them (the deploy's stack probe does just that); a VERSION file beside it stands for the
# release a board was installed with, where no environment variable reaches the module's service
_INSTALLED = Path(__file__).with_name("VERSION")
__version__ = os.environ.get("FAKE_TENSORRT_VERSION") or (
    _INSTALLED.read_text().strip() if _INSTALLED.is_file() else "10.3.0")
_RELEASE = tuple(int(part) for part in __version__.split(".")[:2])
_MAGIC = b"FAKE-TRT-ENGINE\n"
_ALWAYS = ((0, 0), (99, 0))

# The API generations (first release with / first release without), as NVIDIA's bindings have them.
_TENSOR_API = (8, 5)  # I/O tensors by name: num_io_tensors, set_input_shape, set_tensor_address, execute_async_v3
_BINDINGS_GONE = (10, 0)  # binding indices, execute_async_v2, build_engine, max_workspace_size: removed in 10.0
_SERIALIZED_BUILD = (8, 0)  # build_serialized_network and the timing cache
_MEMORY_POOLS = (8, 4)  # set_memory_pool_limit / MemoryPoolType
_NO_IMPLICIT_QUANTIZATION = (11, 0)  # no FP16/INT8 builder flags, no INT8 calibrator, no EXPLICIT_BATCH


def _api(since: tuple = _ALWAYS[0], until: tuple = _ALWAYS[1]) -> Callable[[Any], Any]:
    """Mark a class, function, method or property as existing in releases ``since`` <= release < ``until``."""

    def mark(member: Any) -> Any:
        target = member.fget if isinstance(member, property) else member
        target._trt_api = (since, until)
        return member

    return mark


def _exists(member: Any) -> bool:
    target = member.fget if isinstance(member, property) else member
    since, until = getattr(target, "__dict__", {}).get("_trt_api", _ALWAYS)
    return since <= _RELEASE < until


def _release(cls: type) -> type:
    """Class decorator: delete the members this release does not have."""
    for name, member in list(vars(cls).items()):
        if not _exists(member):
            delattr(cls, name)
    return cls


def _enum(name: str, members: dict[str, int | tuple[int, tuple, tuple]]) -> type[enum.IntEnum]:
    """An IntEnum of the members that exist in this release: name → value, or (value, since, until)."""
    spans = {m: spec if isinstance(spec, tuple) else (spec, *_ALWAYS) for m, spec in members.items()}
    return enum.IntEnum(name, [(m, value) for m, (value, since, until) in spans.items() if since <= _RELEASE < until])


class _Native:
    """Like a pybind11 object: setting an attribute that the class does not define raises AttributeError."""

    def __setattr__(self, name: str, value: object) -> None:
        if not name.startswith("_") and not hasattr(type(self), name):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class Logger(_Native):
    WARNING = 2

    def __init__(self, min_severity: int = WARNING) -> None:
        self._severity = min_severity


def init_libnvinfer_plugins(logger: Logger, namespace: str) -> bool:
    return True


NetworkDefinitionCreationFlag = _enum(
    "NetworkDefinitionCreationFlag",
    {
        # still in 10.x, deprecated and ignored ("networks are always explicit batch"); gone in 11
        "EXPLICIT_BATCH": (0, (0, 0), _NO_IMPLICIT_QUANTIZATION),
        "STRONGLY_TYPED": (1, (9, 0), _ALWAYS[1]),
    },
)
BuilderFlag = _enum(
    "BuilderFlag",
    {
        "FP16": (0, (0, 0), _NO_IMPLICIT_QUANTIZATION),
        "INT8": (1, (0, 0), _NO_IMPLICIT_QUANTIZATION),
        "TF32": (7, (7, 1), _ALWAYS[1]),
    },
)
MemoryPoolType = _api(since=_MEMORY_POOLS)(_enum("MemoryPoolType", {"WORKSPACE": 0}))
TensorIOMode = _api(since=_TENSOR_API)(_enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2}))
DataType = _enum("DataType", {"FLOAT": 0})


def nptype(trt_type: DataType) -> type:
    """Python in NVIDIA's package too (tensorrt/__init__.py), not in the compiled bindings."""
    import numpy as np
    return {DataType.FLOAT: np.float32}[trt_type]


@_api(until=_NO_IMPLICIT_QUANTIZATION)
class IInt8EntropyCalibrator2(_Native):
    def __init__(self) -> None:
        pass


def _dims(value_info: Any) -> tuple[int, ...]:
    return tuple(d.dim_value if d.dim_value > 0 else -1 for d in value_info.type.tensor_type.shape.dim)


class ITensor(_Native):
    def __init__(self, name: str, shape: tuple) -> None:
        self._name, self._shape = name, shape

    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> tuple:
        return self._shape


class INetworkDefinition(_Native):
    def __init__(self, explicit_batch: bool) -> None:
        self._explicit_batch = explicit_batch
        self._onnx = b""
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]


class OnnxParser(_Native):
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        self._network, self._errors = network, []

    def parse(self, model: bytes) -> bool:
        import onnx
        if not self._network._explicit_batch:
            self._errors.append("Network must have explicit batch dimension (NetworkDefinitionCreationFlag)")
            return False
        try:
            graph = onnx.load_from_string(model).graph
        except Exception as exc:
            self._errors.append(f"cannot parse ONNX: {exc}")
            return False
        self._network._onnx = model
        self._network._inputs = [ITensor(i.name, _dims(i)) for i in graph.input]
        self._network._outputs = [ITensor(o.name, _dims(o)) for o in graph.output]
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> str:
        return self._errors[index]


class IOptimizationProfile(_Native):
    def __init__(self) -> None:
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min: tuple, opt: tuple, max: tuple) -> None:  # NVIDIA's argument names
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))


@_api(since=_SERIALIZED_BUILD)
class ITimingCache(_Native):
    def __init__(self, data: bytes) -> None:
        self._data = data or b"fake timing cache\n"

    def serialize(self) -> bytes:
        return self._data


@_release
class IBuilderConfig(_Native):
    int8_calibrator = None

    def __init__(self) -> None:
        self._flags: set[BuilderFlag] = set()
        self._profiles: list[IOptimizationProfile] = []
        self._timing_cache: ITimingCache | None = None
        self._workspace = 0

    @_api(until=_BINDINGS_GONE)
    @property
    def max_workspace_size(self) -> int:
        return self._workspace

    @max_workspace_size.setter
    def max_workspace_size(self, size: int) -> None:
        assert size > 0
        self._workspace = size

    @_api(since=_MEMORY_POOLS)
    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        assert pool == MemoryPoolType.WORKSPACE and pool_size > 0
        self._workspace = pool_size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        assert profile in self._profiles
        return True

    @_api(since=_SERIALIZED_BUILD)
    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    @_api(since=_SERIALIZED_BUILD)
    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._timing_cache = cache
        return True

    @_api(since=_SERIALIZED_BUILD)
    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing_cache

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags.add(flag)


def _calibrate(calibrator: IInt8EntropyCalibrator2, name: str, chw: tuple) -> dict:
    """Run the calibrator as TensorRT does: a stored cache wins, else whole batches until None."""
    import numpy as np
    cached = calibrator.read_calibration_cache()
    if cached:
        return {"calibration": "cache", "batches": 0}
    batch = calibrator.get_batch_size()
    count = int(np.prod((batch, *chw)))
    batches, low, high = 0, np.inf, -np.inf
    while True:
        pointers = calibrator.get_batch([name])
        if not pointers:
            break
        data = np.frombuffer((ctypes.c_float * count).from_address(int(pointers[0])), dtype=np.float32)
        batches, low, high = batches + 1, min(low, float(data.min())), max(high, float(data.max()))
    if not batches:
        raise RuntimeError("calibration failure: the calibrator gave no batch")
    calibrator.write_calibration_cache(json.dumps({"batches": batches}).encode())
    return {"calibration": "images", "batches": batches, "batch": batch, "min": low, "max": high}


def _serialize(network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
    """What every release's build does: None where TensorRT would fail, else this release's engine."""
    tensor = network.get_input(0)
    max_batch = tensor.shape[0]
    if max_batch == -1:
        if not config._profiles or tensor.name not in config._profiles[0]._shapes:
            return None  # TensorRT: "Network has dynamic or shape inputs, but no optimization profile"
        max_batch = config._profiles[0]._shapes[tensor.name][2][0]
    flags = {flag.name for flag in config._flags}
    precision = "int8" if "INT8" in flags else "fp16" if "FP16" in flags else "fp32"
    record = {"version": __version__, "precision": precision, "max_batch": max_batch}
    if precision == "int8":
        if config.int8_calibrator is None:
            return None
        record.update(_calibrate(config.int8_calibrator, tensor.name, tensor.shape[1:]))
    log = os.environ.get("FAKE_TENSORRT_LOG")
    if log:
        with open(log, "a") as out:
            out.write(json.dumps(record) + "\n")
    header = {
        "version": __version__,
        "precision": precision,
        "max_batch": max_batch,
        "input": [tensor.name, list(tensor.shape)],
        "output": [network._outputs[0].name, list(network._outputs[0].shape)],
    }
    return _MAGIC + json.dumps(header).encode() + b"\n" + network._onnx


@_release
class Builder(_Native):
    platform_has_fast_fp16 = True

    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        explicit = _RELEASE >= _BINDINGS_GONE or bool(flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))
        return INetworkDefinition(explicit)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    @_api(since=_SERIALIZED_BUILD)
    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        return _serialize(network, config)

    @_api(until=_BINDINGS_GONE)
    def build_engine(self, network: INetworkDefinition, config: IBuilderConfig) -> ICudaEngine | None:
        serialized = _serialize(network, config)
        return None if serialized is None else Runtime(self._logger).deserialize_cuda_engine(serialized)


_cudart: ctypes.CDLL | None = None


def _stream_synchronize(stream: int) -> None:
    """Let the work queued on ``stream`` before this engine (the input copy) finish first, as a GPU would.

    Through the libcudart this process has loaded (the module's, the fake one in tests): the same file
    opened again is the same library, with the same streams.
    """
    global _cudart
    if _cudart is None:
        with open("/proc/self/maps") as maps:
            loaded = sorted({line.split()[-1] for line in maps if "/libcudart.so" in line})
        if not loaded:
            raise RuntimeError("the fake TensorRT runs engines on a CUDA stream, but no libcudart is loaded")
        _cudart = ctypes.CDLL(loaded[0])
        _cudart.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
    error = _cudart.cudaStreamSynchronize(stream or None)
    if error:
        raise RuntimeError(f"cudaStreamSynchronize failed with error {error}")


@_release
class IExecutionContext(_Native):
    """Binding 0 is the input, binding 1 the output, in both API generations."""

    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._input_shape: tuple | None = None
        self._addresses = [0, 0]

    def _set_shape(self, shape: tuple) -> bool:
        if not 1 <= shape[0] <= self._engine._max_batch:  # TensorRT logs an error and returns False
            return False
        self._input_shape = tuple(shape)
        return True

    def _shape(self, index: int) -> tuple:
        if index == 0:
            return self._input_shape
        return (self._input_shape[0], *self._engine._output_shape[1:])

    def _execute(self, stream: int) -> bool:
        import numpy as np
        _stream_synchronize(stream)
        shape = self._input_shape
        count = int(np.prod(shape))
        data = np.frombuffer((ctypes.c_float * count).from_address(self._addresses[0]), dtype=np.float32)
        (result,) = self._engine._session.run(None, {self._engine._names[0]: data.reshape(shape)})
        result = np.ascontiguousarray(result, dtype=np.float32)
        ctypes.memmove(self._addresses[1], result.ctypes.data, result.nbytes)
        return True

    @_api(until=_BINDINGS_GONE)
    def set_binding_shape(self, binding: int, shape: tuple) -> bool:
        assert binding == 0, "only the input's shape is set"
        return self._set_shape(shape)

    @_api(until=_BINDINGS_GONE)
    def get_binding_shape(self, binding: int) -> tuple:
        return self._shape(binding)

    @_api(until=_BINDINGS_GONE)
    def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
        self._addresses = [int(pointer) for pointer in bindings]
        return self._execute(stream_handle)

    @_api(since=_TENSOR_API)
    def set_input_shape(self, name: str, shape: tuple) -> bool:
        assert name == self._engine._names[0], "only the input's shape is set"
        return self._set_shape(shape)

    @_api(since=_TENSOR_API)
    def get_tensor_shape(self, name: str) -> tuple:
        return self._shape(self._engine._names.index(name))

    @_api(since=_TENSOR_API)
    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._addresses[self._engine._names.index(name)] = int(memory)
        return True

    @_api(since=_TENSOR_API)
    def execute_async_v3(self, stream_handle: int) -> bool:
        return self._execute(stream_handle)


@_release
class ICudaEngine(_Native):
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        import numpy as np
        import onnxruntime
        self._serialized = _MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes
        self._names = (header["input"][0], header["output"][0])
        self._input_shape, self._output_shape = tuple(header["input"][1]), tuple(header["output"][1])
        self._max_batch = header["max_batch"]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        if -1 in self._output_shape[1:]:  # learn the non-batch output dims from one run
            probe = np.zeros((1, *self._input_shape[1:]), dtype=np.float32)
            self._output_shape = (-1, *self._session.run(None, {self._names[0]: probe})[0].shape[1:])

    def _shape(self, index: int) -> tuple:
        return (self._input_shape, self._output_shape)[index]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def serialize(self) -> bytes:
        return self._serialized

    @_api(until=_BINDINGS_GONE)
    @property
    def num_bindings(self) -> int:
        return 2

    @_api(until=_BINDINGS_GONE)
    def get_binding_name(self, index: int) -> str:
        return self._names[index]

    @_api(until=_BINDINGS_GONE)
    def binding_is_input(self, index: int) -> bool:
        return index == 0

    @_api(until=_BINDINGS_GONE)
    def get_binding_shape(self, index: int) -> tuple:
        return self._shape(index)

    @_api(until=_BINDINGS_GONE)
    def get_binding_dtype(self, index: int) -> DataType:
        return DataType.FLOAT

    @_api(since=_TENSOR_API)
    @property
    def num_io_tensors(self) -> int:
        return 2

    @_api(since=_TENSOR_API)
    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    @_api(since=_TENSOR_API)
    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == self._names[0] else TensorIOMode.OUTPUT

    @_api(since=_TENSOR_API)
    def get_tensor_shape(self, name: str) -> tuple:
        return self._shape(self._names.index(name))

    @_api(since=_TENSOR_API)
    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT


class Runtime(_Native):
    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        """None for anything but an engine of this very release, as TensorRT does."""
        data = bytes(serialized_engine)
        if not data.startswith(_MAGIC):
            return None
        header_line, onnx_bytes = data[len(_MAGIC) :].split(b"\n", 1)
        header = json.loads(header_line)
        if header["version"] != __version__:
            return None
        return ICudaEngine(header, onnx_bytes)


for _name, _member in list(globals().items()):  # the module's own names this release lacks
    if not _name.startswith("_") and not _exists(_member):
        del globals()[_name]
del _name, _member

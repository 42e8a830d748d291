"""TensorRT's Python API, as far as module/backends/tensorrt.py uses it, running networks on ONNX Runtime.

See ../README.md. The version rules that the module relies on are kept: before 10.0 an ONNX network
needs the explicit-batch flag, a dynamic batch needs an optimization profile, INT8 needs a
calibrator that hands over whole batches, an engine loads only in the release that built it, and
11.x has no implicit-quantization API.
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "10.3.0")
_MAJOR = int(__version__.split(".")[0])
_MAGIC = b"FAKE-TRT-ENGINE\n"


class Logger:
    WARNING = 2

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity


def init_libnvinfer_plugins(logger: Logger, namespace: str) -> bool:
    return True


if _MAJOR < 11:

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0

    class BuilderFlag(enum.IntEnum):
        FP16 = 0
        INT8 = 1

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

else:

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 5

    class BuilderFlag(enum.IntEnum):
        TF32 = 7


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class TensorIOMode(enum.IntEnum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0


def nptype(dtype: DataType) -> type:
    return {DataType.FLOAT: np.float32}[dtype]


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value if d.dim_value > 0 else -1 for d in value_info.type.tensor_type.shape.dim)


class _Network:
    def __init__(self, explicit_batch: bool) -> None:
        self.explicit_batch = explicit_batch
        self.onnx_bytes = b""
        self.inputs: list[SimpleNamespace] = []
        self.outputs: list[SimpleNamespace] = []

    def get_input(self, index: int) -> SimpleNamespace:
        return self.inputs[index]


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self.errors = network, []

    def parse(self, data: bytes) -> bool:
        if not self.network.explicit_batch:
            self.errors.append("Network must have explicit batch dimension (NetworkDefinitionCreationFlag)")
            return False
        try:
            graph = onnx.load_from_string(data).graph
        except Exception as exc:
            self.errors.append(f"cannot parse ONNX: {exc}")
            return False
        self.network.onnx_bytes = data
        self.network.inputs = [SimpleNamespace(name=i.name, shape=_dims(i)) for i in graph.input]
        self.network.outputs = [SimpleNamespace(name=o.name, shape=_dims(o)) for o in graph.output]
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, min_shape: tuple, opt_shape: tuple, max_shape: tuple) -> None:
        self.shapes[name] = (tuple(min_shape), tuple(opt_shape), tuple(max_shape))


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data or b"fake timing cache\n"

    def serialize(self) -> bytes:
        return self.data


class _Config:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.profiles: list[_Profile] = []
        self.int8_calibrator = None
        self.timing_cache: _TimingCache | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        assert size > 0

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: _Profile) -> None:
        assert profile in self.profiles

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache(bytes(data))

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.timing_cache

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)


def _calibrate(calibrator: IInt8EntropyCalibrator2, name: str, chw: tuple) -> dict:
    """Run the calibrator as TensorRT does: a stored cache wins, else whole batches until None."""
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


class Builder:
    platform_has_fast_fp16 = True

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> _Network:
        explicit = _MAJOR >= 10 or bool(flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))
        return _Network(explicit)

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
        tensor = network.get_input(0)
        max_batch = tensor.shape[0]
        if max_batch == -1:
            if not config.profiles or tensor.name not in config.profiles[0].shapes:
                return None  # TensorRT: "Network has dynamic or shape inputs, but no optimization profile"
            max_batch = config.profiles[0].shapes[tensor.name][2][0]
        flags = {flag.name for flag in config.flags}
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
            "output": [network.outputs[0].name, list(network.outputs[0].shape)],
        }
        return _MAGIC + json.dumps(header).encode() + b"\n" + network.onnx_bytes


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.shapes = {engine.input_name: None}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        if not 1 <= shape[0] <= self.engine.max_batch:
            raise ValueError(f"batch {shape[0]} outside the profile 1..{self.engine.max_batch}")
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        shape = self.shapes[self.engine.input_name]
        if name == self.engine.input_name:
            return shape
        return (shape[0], *self.engine.output_shape[1:])

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        shape = self.shapes[self.engine.input_name]
        count = int(np.prod(shape))
        address = self.addresses[self.engine.input_name]
        data = np.frombuffer((ctypes.c_float * count).from_address(address), dtype=np.float32).reshape(shape)
        (result,) = self.engine.session.run(None, {self.engine.input_name: data})
        result = np.ascontiguousarray(result, dtype=np.float32)
        ctypes.memmove(self.addresses[self.engine.output_name], result.ctypes.data, result.nbytes)
        return True


class _Engine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        self.input_name, self.input_shape = header["input"][0], tuple(header["input"][1])
        self.output_name, self.output_shape = header["output"][0], tuple(header["output"][1])
        self.max_batch = header["max_batch"]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        if -1 in self.output_shape[1:]:  # learn the non-batch output dims from one run
            probe = np.zeros((1, *self.input_shape[1:]), dtype=np.float32)
            self.output_shape = (-1, *self.session.run(None, {self.input_name: probe})[0].shape[1:])

    @property
    def num_io_tensors(self) -> int:
        return 2

    def get_tensor_name(self, index: int) -> str:
        return (self.input_name, self.output_name)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == self.input_name else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple:
        return self.input_shape if name == self.input_name else self.output_shape

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def create_execution_context(self) -> _Context:
        return _Context(self)


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
        """None for anything but an engine of this very release, as TensorRT does."""
        if not data.startswith(_MAGIC):
            return None
        header_line, onnx_bytes = data[len(_MAGIC) :].split(b"\n", 1)
        header = json.loads(header_line)
        if header["version"] != __version__:
            return None
        return _Engine(header, onnx_bytes)

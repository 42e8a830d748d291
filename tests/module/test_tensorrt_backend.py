"""The TensorRT backend's whole code path on a machine without a GPU, in every TensorRT API generation.

``tests/module/fake_tensorrt`` replaces the ``tensorrt`` package at its import boundary (see its README):
networks run on ONNX Runtime, and each release carries only its own API generation's names, so a call of
the wrong generation fails. CUDA is ``tests/module/fake_cudart``, a C stand-in for libcudart found through
CUDA_HOME, which queues async copies until the stream is synchronized. The module itself runs unchanged,
as a subprocess. What this cannot show is TensorRT's speed or numerics on a real GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.module import fake_cudart
from tests.module.onnx_models import COCO80, yolov8_like
from tests.module.test_cli import ROOT, assert_one_clear_error, read_jsonl, run_module

FAKE = Path(__file__).resolve().parent / "fake_tensorrt"
FIXTURE_IMAGES = ROOT / "fixtures" / "images"
BENCH = ("bench", "--backend", "tensorrt", "--frames", "8", "--warmup", "1")
#: one release per API generation: JetPack 4.4 (binding indices, build_engine), JetPack 4.6 (binding indices,
#: build_serialized_network), JetPack 5.1 (both I/O APIs; tensor names used), JetPack 6.1 (tensor names only)
RELEASES = ("7.1.3", "8.2.1", "8.5.2", "10.3.0")

TrtModule = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def cuda_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cuda")
    fake_cudart.build(home)
    return home


def trt_env(tmp_path: Path, cuda_home: Path, version: str) -> dict[str, str]:
    """The stand-in TensorRT ``version``, the fake libcudart, an engine cache in ``tmp_path``."""
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(FAKE), str(ROOT)]),
        CUDA_HOME=str(cuda_home),
        FAKE_CUDART_REPORT=str(tmp_path / "cudart.jsonl"),
        FAKE_TENSORRT_VERSION=version,
        FAKE_TENSORRT_LOG=str(tmp_path / "builds.jsonl"),
        JETSON_HIL_ENGINE_CACHE=str(tmp_path / "engines"),
    )


@pytest.fixture
def trt_module(tmp_path: Path, cuda_home: Path) -> TrtModule:
    """``trt_module(*ARGS, version=...)``: ``python -m module ARGS`` with the stand-ins (default TensorRT 10.3.0)."""

    def run(*args: str | Path, version: str = "10.3.0") -> subprocess.CompletedProcess[str]:
        return run_module(*args, env=trt_env(tmp_path, cuda_home, version))

    return run


def builds(tmp_path: Path) -> list[dict]:
    log = tmp_path / "builds.jsonl"
    return read_jsonl(log) if log.exists() else []


def assert_no_cuda_leak(tmp_path: Path) -> None:
    """Every process's fake libcudart reported at exit: nothing allocated and no stream left."""
    reports = read_jsonl(tmp_path / "cudart.jsonl")
    assert reports
    for report in reports:
        assert (report["device_allocations"], report["host_allocations"], report["streams"]) == (0, 0, 0), report


@pytest.mark.parametrize("version", RELEASES)
def test_engine_is_built_once_per_release_then_loaded_from_the_cache(
    tmp_path: Path, trt_module: TrtModule, version: str
) -> None:
    first = trt_module(*BENCH, version=version)
    assert first.returncode == 0, first.stderr
    assert "building TensorRT fp32 engine for shapes-det.onnx (batch 1)" in first.stderr
    doc = json.loads(first.stdout)
    assert (doc["backend"], doc["precision"], doc["device"]) == ("tensorrt", "fp32", "cuda:0 Fake GPU (CPU)")
    assert (doc["versions"]["tensorrt"], doc["versions"]["cuda_runtime"]) == (version, "12.4")
    assert doc["raw_fps"] > 0 and doc["pipeline_fps"] > 0
    engines = sorted(p.name for p in (tmp_path / "engines").glob("*.engine"))
    assert engines == [f"{doc['model_sha256'][:16]}-trt{version}-fake-gpu-cpu-fp32-b1.engine"]
    # the timing cache API exists from TensorRT 8.0 on
    timing_caches = sorted(p.name for p in (tmp_path / "engines").glob("timing-*.cache"))
    assert timing_caches == ([] if version.startswith("7.") else [f"timing-trt{version}-fake-gpu-cpu.cache"])

    again = trt_module(*BENCH, version=version)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stderr
    assert len(builds(tmp_path)) == 1
    assert_no_cuda_leak(tmp_path)


@pytest.fixture(scope="module")
def onnxruntime_detections(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    """Six fixture images through ONNX Runtime at batch 4: what every TensorRT release must detect."""
    folder = tmp_path_factory.mktemp("onnxruntime")
    sink = folder / "detections.jsonl"
    result = run_module(
        "run", "--backend", "onnxruntime", "--batch", "4", "--source", f"images:{FIXTURE_IMAGES}", "--frames", "6",
        "--sink", f"jsonl:{sink}", "--exit-when-done", "--api-port", "0", "--state-dir", folder / "state",
        "--run-id", "same",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [(m["frame_id"], m["detections"]) for m in read_jsonl(sink)]


@pytest.mark.parametrize("version", RELEASES)
def test_detections_through_tensorrt_equal_onnxruntime_including_a_partial_batch(
    tmp_path: Path, trt_module: TrtModule, onnxruntime_detections: list[tuple], version: str
) -> None:
    """Six images at batch 4: one full batch, then a batch of two that re-binds the input shape."""
    sink = tmp_path / "tensorrt.jsonl"
    result = trt_module(
        "run", "--backend", "tensorrt", "--batch", "4", "--source", f"images:{FIXTURE_IMAGES}", "--frames", "6",
        "--sink", f"jsonl:{sink}", "--exit-when-done", "--api-port", "0", "--state-dir", tmp_path / "state",
        "--run-id", "same", version=version,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    detections = [(m["frame_id"], m["detections"]) for m in read_jsonl(sink)]
    assert len(detections) == 6
    assert sum(len(d) for _, d in detections) > 0
    assert detections == onnxruntime_detections
    assert_no_cuda_leak(tmp_path)


@pytest.mark.parametrize("version", RELEASES)
def test_int8_calibrates_on_held_out_reference_scenes_then_reuses_the_cache(
    tmp_path: Path, trt_module: TrtModule, version: str
) -> None:
    result = trt_module(*BENCH, "--precision", "int8", "--batch", "4", version=version)
    assert result.returncode == 0, result.stderr
    (build,) = builds(tmp_path)
    # 256 held-out scenes in whole batches of 4, letterboxed to 0..1 like every inference input
    assert build == {"version": version, "precision": "int8", "max_batch": 4, "calibration": "images",
                     "batches": 64, "batch": 4, "min": 0.0, "max": 1.0}  # fmt: skip
    (calibration,) = (tmp_path / "engines").glob("*-int8-b4-calscenes1000500x256.calib")
    for engine in (tmp_path / "engines").glob("*.engine"):
        engine.unlink()  # a rebuild (new GPU clocks, deleted engine) must not calibrate again
    rebuilt = trt_module(*BENCH, "--precision", "int8", "--batch", "4", version=version)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert builds(tmp_path)[-1]["calibration"] == "cache"
    assert calibration.exists()
    assert_no_cuda_leak(tmp_path)  # the calibrator's pinned and device buffers are freed after the build


def test_int8_of_a_users_model_needs_calibration_images_and_uses_them(tmp_path: Path, trt_module: TrtModule) -> None:
    model = yolov8_like(tmp_path / "user80.onnx", names=COCO80)
    refused = trt_module(*BENCH, "--model", model, "--precision", "int8")
    assert_one_clear_error(refused, "int8 needs calibration images", "--calib-images")

    missing = trt_module(*BENCH, "--model", model, "--precision", "int8", "--calib-images", tmp_path / "no")
    assert_one_clear_error(missing, "does not exist")

    result = trt_module(*BENCH, "--model", model, "--precision", "int8", "--calib-images", FIXTURE_IMAGES)
    assert result.returncode == 0, result.stderr
    assert builds(tmp_path)[-1]["batches"] == len(list(FIXTURE_IMAGES.glob("*.png")))

    few = tmp_path / "three-images"
    few.mkdir()
    for image in sorted(FIXTURE_IMAGES.glob("*.png"))[:3]:
        (few / image.name).write_bytes(image.read_bytes())
    args = (*BENCH, "--model", model, "--precision", "int8", "--batch", "4", "--calib-images", few)
    assert_one_clear_error(trt_module(*args), "at least one batch of 4 images", f"{few} has 3")

    other = trt_module(*args[:-1], FIXTURE_IMAGES)  # other images: another engine, not the cached one
    assert other.returncode == 0, other.stderr
    assert "building TensorRT int8 engine" in other.stderr
    assert len({p.name for p in (tmp_path / "engines").glob("*-int8-b*-cal*.engine")}) == 2


def test_calibration_images_outside_int8_are_refused(trt_module: TrtModule) -> None:
    for backend, precision in (("onnxruntime", "fp32"), ("tensorrt", "fp16")):
        args = ("bench", "--backend", backend, "--precision", precision, "--calib-images", FIXTURE_IMAGES)
        assert_one_clear_error(trt_module(*args), "--calib-images is for --precision int8")


def test_a_release_without_implicit_quantization_runs_fp32_and_refuses_fp16_clearly(trt_module: TrtModule) -> None:
    """TensorRT 11 dropped the FP16/INT8 builder flags and the INT8 calibrator base class."""
    assert trt_module(*BENCH, version="11.0.0").returncode == 0
    for precision in ("fp16", "int8"):
        refused = trt_module(*BENCH, "--precision", precision, version="11.0.0")
        assert_one_clear_error(refused, "TensorRT 11.0.0 has no FP16/INT8 builder flags")


def test_a_known_bad_release_and_a_damaged_engine_are_refused_clearly(tmp_path: Path, trt_module: TrtModule) -> None:
    assert_one_clear_error(trt_module(*BENCH, version="10.1.0"), "TensorRT 10.1.0 builds wrong engines")
    assert trt_module(*BENCH).returncode == 0
    (engine,) = (tmp_path / "engines").glob("*.engine")
    engine.write_bytes(b"half a file")
    assert_one_clear_error(trt_module(*BENCH), f"cannot load engine {engine}", "delete it to rebuild")


def test_a_machine_without_a_gpu_is_one_clear_error(tmp_path: Path, cuda_home: Path) -> None:
    """The CUDA runtime is there but finds no device (FAKE_CUDART_NO_DEVICE): one line, CUDA's own words."""
    env = dict(trt_env(tmp_path, cuda_home, "10.3.0"), FAKE_CUDART_NO_DEVICE="1")
    assert_one_clear_error(run_module(*BENCH, env=env), "cudaErrorNoDevice", "no CUDA-capable device is detected")


#: Run in the stand-in's environment: builds and opens an engine the right way, then makes the calls of the
#: other API generation on it, as a wrong version pick would. Prints one line per call.
WRONG_GENERATION = """
from pathlib import Path
import tensorrt as trt
from module.backends import cudart, tensorrt as backend
from module.model import load_model

model, logger = load_model(), trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
network, config = backend._create_network(builder), builder.create_builder_config()
serialized = backend.build_engine(cudart.runtime(), model, logger, precision="fp32", batch=1,
                                  timing_cache=Path("timing.cache"), calibration=None,
                                  calibration_cache=Path("calib.cache"))
engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
context = engine.create_execution_context()
io = backend.engine_io(engine, context)  # this release's generation: works
other = backend._BindingIO if isinstance(io, backend._TensorIO) else backend._TensorIO
backend.TRT_VERSION = (7, 1) if other is backend._BindingIO else (10, 3)  # the wrong pick
calls = {
    "engine_io": lambda: backend.engine_io(engine, context),
    "execute": lambda: other.execute(io, 0),
    "workspace": lambda: backend._limit_workspace(config),
    "build": lambda: backend._build_serialized(builder, network, config),
}
print(type(io).__name__, "then", other.__name__)
for name, call in calls.items():
    try:
        call()
        print(name + ": ok")
    except AttributeError as exc:
        print(name + ": AttributeError:", exc)
"""


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "7.1.3",
            [
                "_BindingIO then _TensorIO",
                "engine_io: AttributeError: 'ICudaEngine' object has no attribute 'num_io_tensors'",
                "execute: AttributeError: 'IExecutionContext' object has no attribute 'execute_async_v3'",
                "workspace: AttributeError: 'IBuilderConfig' object has no attribute 'set_memory_pool_limit'",
                "build: AttributeError: 'Builder' object has no attribute 'build_serialized_network'",
            ],
        ),
        (
            "10.3.0",
            [
                "_TensorIO then _BindingIO",
                "engine_io: AttributeError: 'ICudaEngine' object has no attribute 'num_bindings'",
                "execute: AttributeError: 'IExecutionContext' object has no attribute 'execute_async_v2'",
                "workspace: AttributeError: 'IBuilderConfig' object has no attribute 'max_workspace_size'",
                "build: AttributeError: 'Builder' object has no attribute 'build_engine'",
            ],
        ),
    ],
)
def test_a_call_of_the_wrong_api_generation_fails_loudly(
    tmp_path: Path, cuda_home: Path, version: str, expected: list[str]
) -> None:
    """The stand-in has only its release's names, and the backend never probes for them: a wrong pick raises."""
    env = trt_env(tmp_path, cuda_home, version)
    result = subprocess.run(
        [sys.executable, "-c", WRONG_GENERATION], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


def _python36() -> str | None:
    """pyenv's 3.6 (its interpreter, not the shim, which runs only where 3.6 is selected), else python3.6."""
    pyenv = sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"), "versions").glob("3.6*/bin/python3.6"))
    if pyenv:
        return str(pyenv[-1])
    found = shutil.which("python3.6")
    return found if found and "/shims/" not in found else None


#: Loads module/backends/{libcudart,cudart,tensorrt}.py on Python 3.6 (JetPack 4) with stand-ins for what they import:
#: every annotation and class body is evaluated, as on the board.
ON_PYTHON36 = """
import importlib.util, sys, types
root = sys.argv[1]
def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module
class ModuleError(Exception): pass
class Backend: pass
stub("numpy", dtype=lambda t: t, float32=float, ndarray=object)
stub("tensorrt", __version__="7.1.3.0")
stub("module")
stub("module.errors", ModuleError=ModuleError, ModelError=ModuleError, BackendUnavailable=ModuleError)
stub("module.calibration", CalibrationSet=object)
stub("module.model", ModelInfo=object)
stub("module.backends")
stub("module.backends.base", Backend=Backend)
stub("module.backends.engine_cache", DEFAULT_DIR=None, engine_key=None, engine_path=None, timing_cache_path=None)
for name in ("libcudart", "cudart", "tensorrt"):
    spec = importlib.util.spec_from_file_location("module.backends." + name, root + "/module/backends/" + name + ".py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
print(sys.modules["module.backends.tensorrt"].TRT_VERSION)
"""


def test_the_backend_loads_on_python_3_6() -> None:
    """JetPack 4's python3 is 3.6 (TensorRT 7.1-8.2): no postponed annotations, ``X | None`` or builtin generics."""
    python = _python36()
    if python is None:
        pytest.skip("no Python 3.6 here (python3.6 or pyenv's 3.6.x)")
    result = subprocess.run([python, "-c", ON_PYTHON36, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(7, 1)"

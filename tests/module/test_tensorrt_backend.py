"""The TensorRT backend's whole code path on a machine without a GPU, through a stand-in for TensorRT.

``tests/module/fake_tensorrt`` replaces the ``tensorrt`` and ``cuda-python`` packages at their import
boundary (see its README): networks run on ONNX Runtime, "device" memory is host memory, and the
TensorRT rules the module depends on are kept. The module itself runs unchanged, as a subprocess.
What this cannot show is TensorRT's speed or numerics on a real GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.module.onnx_models import COCO80, yolov8_like
from tests.module.test_cli import ROOT, assert_one_clear_error, read_jsonl, run_module

FAKE = Path(__file__).resolve().parent / "fake_tensorrt"
FIXTURE_IMAGES = ROOT / "fixtures" / "images"
BENCH = ("bench", "--backend", "tensorrt", "--frames", "8", "--warmup", "1")


def trt_module(tmp_path: Path, *args: str | Path, version: str = "10.3.0") -> subprocess.CompletedProcess[str]:
    """``python -m module ARGS`` with the stand-in TensorRT ``version`` and an engine cache in ``tmp_path``."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(FAKE), str(ROOT)]),
        FAKE_TENSORRT_VERSION=version,
        FAKE_TENSORRT_LOG=str(tmp_path / "builds.jsonl"),
        JETSON_HIL_ENGINE_CACHE=str(tmp_path / "engines"),
    )
    return run_module(*args, env=env)


def builds(tmp_path: Path) -> list[dict]:
    log = tmp_path / "builds.jsonl"
    return read_jsonl(log) if log.exists() else []


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0"])
def test_engine_is_built_once_per_release_then_loaded_from_the_cache(tmp_path: Path, version: str) -> None:
    first = trt_module(tmp_path, *BENCH, version=version)
    assert first.returncode == 0, first.stderr
    assert "building TensorRT fp32 engine for shapes-det.onnx (batch 1)" in first.stderr
    doc = json.loads(first.stdout)
    assert (doc["backend"], doc["precision"], doc["device"]) == ("tensorrt", "fp32", "cuda:0 Fake GPU (CPU)")
    assert doc["raw_fps"] > 0 and doc["pipeline_fps"] > 0
    engines = sorted(p.name for p in (tmp_path / "engines").glob("*.engine"))
    assert engines == [f"{doc['model_sha256'][:16]}-trt{version}-fake-gpu-cpu-fp32-b1.engine"]

    again = trt_module(tmp_path, *BENCH, version=version)
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stderr
    assert len(builds(tmp_path)) == 1


def test_detections_through_tensorrt_equal_onnxruntime_including_a_partial_batch(tmp_path: Path) -> None:
    """Six images at batch 4: one full batch, then a batch of two that re-binds the input shape."""
    outputs = {}
    for backend in ("tensorrt", "onnxruntime"):
        sink = tmp_path / f"{backend}.jsonl"
        result = trt_module(
            tmp_path, "run", "--backend", backend, "--batch", "4", "--source", f"images:{FIXTURE_IMAGES}",
            "--frames", "6", "--sink", f"jsonl:{sink}", "--exit-when-done", "--api-port", "0",
            "--state-dir", tmp_path / backend, "--run-id", "same",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[backend] = [(m["frame_id"], m["detections"]) for m in read_jsonl(sink)]
    assert len(outputs["tensorrt"]) == 6
    assert sum(len(d) for _, d in outputs["tensorrt"]) > 0
    assert outputs["tensorrt"] == outputs["onnxruntime"]


def test_int8_calibrates_on_held_out_reference_scenes_then_reuses_the_cache(tmp_path: Path) -> None:
    result = trt_module(tmp_path, *BENCH, "--precision", "int8", "--batch", "4")
    assert result.returncode == 0, result.stderr
    (build,) = builds(tmp_path)
    # 256 held-out scenes in whole batches of 4, letterboxed to 0..1 like every inference input
    assert build == {"version": "10.3.0", "precision": "int8", "max_batch": 4, "calibration": "images",
                     "batches": 64, "batch": 4, "min": 0.0, "max": 1.0}  # fmt: skip
    (calibration,) = (tmp_path / "engines").glob("*-int8-b4-calscenes1000500x256.calib")
    for engine in (tmp_path / "engines").glob("*.engine"):
        engine.unlink()  # a rebuild (new GPU clocks, deleted engine) must not calibrate again
    rebuilt = trt_module(tmp_path, *BENCH, "--precision", "int8", "--batch", "4")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert builds(tmp_path)[-1]["calibration"] == "cache"
    assert calibration.exists()


def test_int8_of_a_users_model_needs_calibration_images_and_uses_them(tmp_path: Path) -> None:
    model = yolov8_like(tmp_path / "user80.onnx", names=COCO80)
    refused = trt_module(tmp_path, *BENCH, "--model", model, "--precision", "int8")
    assert_one_clear_error(refused, "int8 needs calibration images", "--calib-images")

    missing = trt_module(tmp_path, *BENCH, "--model", model, "--precision", "int8", "--calib-images", tmp_path / "no")
    assert_one_clear_error(missing, "does not exist")

    result = trt_module(tmp_path, *BENCH, "--model", model, "--precision", "int8", "--calib-images", FIXTURE_IMAGES)
    assert result.returncode == 0, result.stderr
    assert builds(tmp_path)[-1]["batches"] == len(list(FIXTURE_IMAGES.glob("*.png")))

    few = tmp_path / "three-images"
    few.mkdir()
    for image in sorted(FIXTURE_IMAGES.glob("*.png"))[:3]:
        (few / image.name).write_bytes(image.read_bytes())
    args = (*BENCH, "--model", model, "--precision", "int8", "--batch", "4", "--calib-images", few)
    assert_one_clear_error(trt_module(tmp_path, *args), "at least one batch of 4 images", f"{few} has 3")

    other = trt_module(tmp_path, *args[:-1], FIXTURE_IMAGES)  # other images: another engine, not the cached one
    assert other.returncode == 0, other.stderr
    assert "building TensorRT int8 engine" in other.stderr
    assert len({p.name for p in (tmp_path / "engines").glob("*-int8-b*-cal*.engine")}) == 2


def test_calibration_images_outside_int8_are_refused(tmp_path: Path) -> None:
    for backend, precision in (("onnxruntime", "fp32"), ("tensorrt", "fp16")):
        args = ("bench", "--backend", backend, "--precision", precision, "--calib-images", FIXTURE_IMAGES)
        assert_one_clear_error(trt_module(tmp_path, *args), "--calib-images is for --precision int8")


def test_a_release_without_implicit_quantization_runs_fp32_and_refuses_fp16_clearly(tmp_path: Path) -> None:
    """TensorRT 11 dropped the FP16/INT8 builder flags and the INT8 calibrator base class."""
    assert trt_module(tmp_path, *BENCH, version="11.0.0").returncode == 0
    for precision in ("fp16", "int8"):
        refused = trt_module(tmp_path, *BENCH, "--precision", precision, version="11.0.0")
        assert_one_clear_error(refused, "TensorRT 11.0.0 has no FP16/INT8 builder flags")


def test_a_known_bad_release_and_a_damaged_engine_are_refused_clearly(tmp_path: Path) -> None:
    assert_one_clear_error(trt_module(tmp_path, *BENCH, version="10.1.0"), "TensorRT 10.1.0 builds wrong engines")
    assert trt_module(tmp_path, *BENCH).returncode == 0
    (engine,) = (tmp_path / "engines").glob("*.engine")
    engine.write_bytes(b"half a file")
    assert_one_clear_error(trt_module(tmp_path, *BENCH), f"cannot load engine {engine}", "delete it to rebuild")

"""TensorRT engines are cached per model, TensorRT version, GPU, precision and batch: any change is a new engine."""

from __future__ import annotations

from pathlib import Path

from module.backends.engine_cache import engine_key, engine_path, timing_cache_path

BASE = {"model_sha256": "ab" * 32, "trt_version": "10.3.0", "gpu": "Orin (nvgpu)", "precision": "fp16", "batch": 4}


def test_the_key_names_everything_an_engine_depends_on():
    key = engine_key(**BASE)
    assert key == "abababababababab-trt10.3.0-orin-nvgpu-fp16-b4"
    assert engine_path(Path("/c"), key) == Path("/c/abababababababab-trt10.3.0-orin-nvgpu-fp16-b4.engine")


def test_every_input_changes_the_key():
    changes = {"model_sha256": "cd" * 32, "trt_version": "8.5.2.2", "gpu": "Xavier", "precision": "int8", "batch": 1}
    keys = {engine_key(**{**BASE, field: value}) for field, value in changes.items()}
    assert len(keys) == len(changes) and engine_key(**BASE) not in keys


def test_timing_cache_is_shared_per_gpu_and_version():
    assert timing_cache_path(Path("/c"), "10.3.0", "Orin") == Path("/c/timing-trt10.3.0-orin.cache")


def test_int8_keys_name_their_calibration_set():
    int8 = {**BASE, "precision": "int8"}
    assert engine_key(**int8, calibration="scenes1000500x256").endswith("-int8-b4-calscenes1000500x256")
    assert engine_key(**int8, calibration="a1b2c3") != engine_key(**int8, calibration="d4e5f6")
    assert engine_key(**int8) == "abababababababab-trt10.3.0-orin-nvgpu-int8-b4"

"""Where built TensorRT engines live: one file per (model, TensorRT, GPU, precision, batch).

An engine is only valid for the exact TensorRT version and GPU it was built on, so all of
them are in the key; a changed model gets a new hash and therefore a new engine.
"""

import os
import re
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("JETSON_HIL_ENGINE_CACHE", "~/.cache/jetson-hil-module/engines")).expanduser()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def engine_key(model_sha256: str, trt_version: str, gpu: str, precision: str, batch: int, calibration: str = "") -> str:
    """A file-name-safe cache key, e.g. ``3fa2…-trt10.3.0-orin-fp16-b4``; INT8 adds its calibration set's digest."""
    key = f"{model_sha256[:16]}-trt{slug(trt_version)}-{slug(gpu)}-{precision}-b{batch}"
    return f"{key}-cal{slug(calibration)}" if calibration else key


def engine_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / (key + ".engine")


def timing_cache_path(cache_dir: Path, trt_version: str, gpu: str) -> Path:
    """The timing cache is shared by all models on one GPU and TensorRT version; it speeds up rebuilds."""
    return cache_dir / f"timing-trt{slug(trt_version)}-{slug(gpu)}.cache"

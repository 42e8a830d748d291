"""INT8 calibration batches: what TensorRT's entropy calibrator sees, letterboxed exactly like inference.

The shipped reference model calibrates on its own held-out synthetic scenes, so ``--precision
int8`` works on a board with nothing else; a user's model needs ``--calib-images DIR`` with
images like those it will see in the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import numpy as np

from .model import DEFAULT_MODEL, ModelInfo
from .preprocess import letterbox
from .sources import image_folder, list_images

#: enough for stable entropy histograms on a small detector, few enough to calibrate in minutes on a Nano
CALIBRATION_IMAGES = 256

#: called with the engine's input shape (batch, 3, H, W); yields full float32 batches
Calibration = Callable[[tuple], Iterator[np.ndarray]]


#: held-out scenes past the 500 that the model card and the correctness fixtures score on, so that
#: INT8 is never calibrated on the images it is judged on (MLPerf keeps the two apart as well)
CALIBRATION_SEED0_OFFSET = 500


def _reference_scenes(count: int) -> Iterator[np.ndarray]:
    from .synthetic import VAL_SEED0, render_scene

    for i in range(count):
        yield render_scene(VAL_SEED0 + CALIBRATION_SEED0_OFFSET + i).image


def _batches(images: Iterator[np.ndarray], shape: tuple) -> Iterator[np.ndarray]:
    """Whole batches only: the calibrator's batch size is fixed, so a short tail is left out."""
    batch, _, height, width = shape
    pending: list[np.ndarray] = []
    for image in images:
        pending.append(letterbox(image, (height, width))[0])
        if len(pending) == batch:
            yield np.stack(pending)
            pending = []


def calibration_batches(
    model: ModelInfo, images_dir: str | Path | None = None, count: int = CALIBRATION_IMAGES
) -> Calibration | None:
    """Batches from ``images_dir``, else the reference model's validation scenes; None for a user's model without."""
    if images_dir is not None:
        folder = Path(images_dir)
        list_images(folder)  # a missing or empty folder fails now, not minutes into a build
        return lambda shape: _batches((frame.image for frame in image_folder(folder, limit=count)), shape)
    if model.path.resolve() == DEFAULT_MODEL:
        return lambda shape: _batches(_reference_scenes(count), shape)
    return None

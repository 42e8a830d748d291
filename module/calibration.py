"""INT8 calibration images: what TensorRT's entropy calibrator sees, letterboxed exactly like inference.

The shipped reference model calibrates on its own held-out synthetic scenes, so ``--precision
int8`` works on a board with nothing else; a user's model needs ``--calib-images DIR`` with
images like those it will see in the field. The set's digest is part of the engine cache key, so
other calibration images give another engine, never a stale one.
"""

import hashlib
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Union

import numpy as np

from .errors import ModuleError
from .model import DEFAULT_MODEL, ModelInfo, file_sha256
from .preprocess import letterbox
from .sources import list_images, read_image

#: enough for stable entropy histograms on a small detector, few enough to calibrate in minutes on a Nano
CALIBRATION_IMAGES = 256
#: held-out scenes past the 500 that the model card and the correctness fixtures score on, so that
#: INT8 is never calibrated on the images it is judged on (MLPerf keeps the two apart as well)
CALIBRATION_SEED0_OFFSET = 500


class CalibrationSet(NamedTuple):
    """Where the calibration images come from, how many there are and a short digest of them."""

    name: str
    count: int
    digest: str
    images: Callable[[], Iterator[np.ndarray]]

    def batches(self, shape: tuple) -> Iterator[np.ndarray]:
        """Whole ``(batch, 3, H, W)`` batches: the calibrator's batch size is fixed, a short tail is left out.

        Too few images for one batch fails here, before the build, not inside TensorRT's callback.
        """
        if self.count < shape[0]:
            raise ModuleError(
                f"int8 calibration needs at least one batch of {shape[0]} images; {self.name} has {self.count}"
            )
        return self._batched(shape)

    def _batched(self, shape: tuple) -> Iterator[np.ndarray]:
        batch, _, height, width = shape
        pending = []
        for image in self.images():
            pending.append(letterbox(image, (height, width))[0])
            if len(pending) == batch:
                yield np.stack(pending)
                pending = []


def _folder_set(folder: Path, count: int) -> CalibrationSet:
    paths = list_images(folder)[:count]  # a missing or empty folder fails now, not minutes into a build
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return CalibrationSet(str(folder), len(paths), digest.hexdigest()[:12], lambda: (read_image(p) for p in paths))


def _reference_set(count: int) -> CalibrationSet:
    from .synthetic import VAL_SEED0, render_scene

    first = VAL_SEED0 + CALIBRATION_SEED0_OFFSET

    def scenes() -> Iterator[np.ndarray]:
        return (render_scene(first + i).image for i in range(count))

    return CalibrationSet("the reference scenes", count, f"scenes{first}x{count}", scenes)


def calibration_set(
    model: ModelInfo, images_dir: Union[str, Path, None] = None, count: int = CALIBRATION_IMAGES
) -> Optional[CalibrationSet]:
    """Images from ``images_dir``, else the reference model's held-out scenes; None for a user's model without."""
    if images_dir is not None:
        return _folder_set(Path(images_dir), count)
    if model.path.resolve() == DEFAULT_MODEL:
        return _reference_set(count)
    return None

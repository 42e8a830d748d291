"""Letterbox preprocessing: keep the aspect ratio, pad to the model input, RGB float 0..1 NCHW.

The same function feeds the engine, the golden outputs and the INT8 calibrator, so that all
three see identical tensors.
"""

from typing import NamedTuple, Optional, Tuple

import numpy as np

try:  # OpenCV resizes 10x faster; the numpy path keeps the module usable without it.
    import cv2
except ImportError:  # pragma: no cover - exercised only on boards without OpenCV
    cv2 = None

PAD_VALUE = 114
_SCALE = np.float32(1.0 / 255.0)
_PAD = np.float32(PAD_VALUE) * _SCALE  # what the scaling gives a pad pixel, bit for bit


class Letterbox(NamedTuple):
    """How an image was placed in the model input, to map boxes back to image pixels."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Map x1,y1,x2,y2 boxes from model-input pixels back to the original image, clipped."""
        out = boxes.astype(np.float32, copy=True)
        # fancy-indexed columns are copies: clip them, then assign (clipping "in place" into a copy clipped nothing)
        out[:, [0, 2]] = np.clip((out[:, [0, 2]] - self.pad_x) / self.scale, 0, self.width)
        out[:, [1, 3]] = np.clip((out[:, [1, 3]] - self.pad_y) / self.scale, 0, self.height)
        return out


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if cv2 is not None:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    ys = (np.arange(height) * (image.shape[0] / height)).astype(np.intp)
    xs = (np.arange(width) * (image.shape[1] / width)).astype(np.intp)
    return image[ys][:, xs]


def letterbox(
    image: np.ndarray, input_hw: Tuple[int, int], out: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, Letterbox]:
    """Place an HxWx3 uint8 RGB image into a 3xHxW float32 tensor (``out`` reused when given).

    The resized image is split into contiguous planes and scaled straight into ``out``; only the
    borders get the pad value. This costs half of a strided HWC→CHW conversion, and every bit of
    CPU spent here is taken from the engine on a small board.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    in_h, in_w = input_hw
    h, w = image.shape[:2]
    scale = min(in_w / w, in_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
    if out is None:
        out = np.empty((3, in_h, in_w), dtype=np.float32)
    for border in (
        out[:, :pad_y],
        out[:, pad_y + new_h :],
        out[:, pad_y : pad_y + new_h, :pad_x],
        out[:, pad_y : pad_y + new_h, pad_x + new_w :],
    ):
        border.fill(_PAD)
    resized = _resize(image, new_w, new_h) if (new_w, new_h) != (w, h) else image
    planes = cv2.split(resized) if cv2 is not None else resized.transpose(2, 0, 1)
    for plane, target in zip(planes, out[:, pad_y : pad_y + new_h, pad_x : pad_x + new_w]):
        np.multiply(plane, _SCALE, out=target, casting="unsafe")
    return out, Letterbox(scale=scale, pad_x=float(pad_x), pad_y=float(pad_y), width=w, height=h)

"""The reference detector: the model card's contract implemented a second time, on another runtime.

Golden detections must not come from the code under test, or a bug in the module's letterbox or
decode would be compared with itself and pass. This file reads nothing from ``module/``: it
implements the contract in ``module/models/MODEL_CARD.md`` from scratch with OpenCV. ``cv2.dnn``
runs the ONNX graph (not ONNX Runtime), ``cv2.copyMakeBorder`` pads, ``cv2.dnn.blobFromImage``
scales and reorders, and ``cv2.dnn.NMSBoxesBatched`` suppresses.

The contract, as the card states it: letterbox to the input size keeping the aspect ratio
(bilinear resize, the smaller half of the padding on the left/top, pad value 114), RGB scaled to
0..1 in NCHW; output rows cx, cy, w, h in input pixels then one score per class; a detection is
the best class of an anchor scoring above the threshold; class-aware NMS; at most 300 per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from harness.accuracy import Box
from harness.errors import HarnessError

PAD = (114, 114, 114)
MAX_PER_IMAGE = 300


@dataclass(frozen=True)
class Placement:
    """Where the letterbox put an image inside the model input."""

    ratio: float
    left: int
    top: int
    width: int
    height: int

    def unmap(self, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
        """Model-input corners → image pixels, clipped to the image."""
        xs = np.clip((np.stack([x1, x2], axis=1) - self.left) / self.ratio, 0, self.width)
        ys = np.clip((np.stack([y1, y2], axis=1) - self.top) / self.ratio, 0, self.height)
        return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if "error:" in line), str(exc).strip()[:200])


class ReferenceDetector:
    """One ONNX model run through OpenCV's DNN module on the CPU, at FP32."""

    def __init__(self, model: Path) -> None:
        self.model = model
        try:
            self.net = cv2.dnn.readNetFromONNX(str(model))
        except cv2.error as exc:
            raise HarnessError(f"{model}: OpenCV's DNN module cannot read it ({_first_line(exc)})") from None
        self.runtime = f"opencv-dnn {cv2.__version__} cpu fp32"

    @staticmethod
    def place(image_rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Placement]:
        """Letterbox an RGB image into a (1, 3, height, width) float32 blob."""
        in_h, in_w = size
        h, w = image_rgb.shape[:2]
        ratio = min(in_h / h, in_w / w)
        inner_w, inner_h = max(1, round(w * ratio)), max(1, round(h * ratio))
        if (inner_w, inner_h) != (w, h):
            image_rgb = cv2.resize(image_rgb, (inner_w, inner_h), interpolation=cv2.INTER_LINEAR)
        left, top = (in_w - inner_w) // 2, (in_h - inner_h) // 2
        canvas = cv2.copyMakeBorder(image_rgb, top, in_h - inner_h - top, left, in_w - inner_w - left,
                                    cv2.BORDER_CONSTANT, value=PAD)
        blob = cv2.dnn.blobFromImage(canvas, scalefactor=1.0 / 255.0, swapRB=False, crop=False)
        return blob, Placement(ratio, left, top, w, h)

    def detect(self, image_rgb: np.ndarray, size: tuple[int, int], conf: float, iou: float) -> list[Box]:
        """Detections of one image in image pixels, best score first."""
        blob, placement = self.place(image_rgb, size)
        self.net.setInput(blob)
        try:
            out = self.net.forward()
        except cv2.error as exc:
            raise HarnessError(f"{self.model}: OpenCV's DNN module cannot run it ({_first_line(exc)})") from None
        if out.ndim != 3 or not 4 < out.shape[1] < out.shape[2]:
            raise HarnessError(f"{self.model}: output {list(out.shape)} is not the YOLOv8 layout [batch, 4+classes, "
                               "anchors] the reference detector reads; golden detections cannot be made for it")
        rows = out[0].T  # [anchors, 4 + classes]
        scores = rows[:, 4:]
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(rows)), best]
        chosen = np.flatnonzero(best_score > conf)
        cx, cy, bw, bh = (rows[chosen, k] for k in range(4))
        rects = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1).astype(np.float64).tolist()
        kept = cv2.dnn.NMSBoxesBatched(rects, best_score[chosen].tolist(), best[chosen].tolist(), conf, iou)
        kept = np.asarray(kept, dtype=np.intp).reshape(-1)
        kept = kept[np.argsort(-best_score[chosen][kept], kind="stable")][:MAX_PER_IMAGE]
        pick = chosen[kept]
        corners = placement.unmap(rows[pick, 0] - rows[pick, 2] / 2, rows[pick, 1] - rows[pick, 3] / 2,
                                  rows[pick, 0] + rows[pick, 2] / 2, rows[pick, 1] + rows[pick, 3] / 2)
        return [Box(int(c), *map(float, box), score=float(s))
                for c, box, s in zip(best[pick], corners, best_score[pick], strict=True)]


def input_size(model: Path) -> tuple[int, int]:
    """The model's fixed input height and width, read from the ONNX graph."""
    import onnx

    try:
        dims = onnx.load(str(model), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    except Exception as exc:  # onnx raises DecodeError and friends
        raise HarnessError(f"{model}: not a readable ONNX model ({exc})") from None
    if len(dims) != 4 or not dims[2].dim_value or not dims[3].dim_value:
        raise HarnessError(f"{model}: input is not [batch, 3, H, W] with a fixed H and W")
    return int(dims[2].dim_value), int(dims[3].dim_value)

"""Decode raw detector outputs (YOLOv8/YOLO11 or YOLOv5 layout) into boxes, with pure-numpy NMS.

The layout is detected from the output shape, so a user's own export drops in unchanged:

- ``yolov8``: ``[B, 4+nc, A]``: rows cx, cy, w, h then per-class scores, no objectness.
- ``yolov5``: ``[B, A, 5+nc]``: cx, cy, w, h, objectness, per-class scores.
"""

from typing import TYPE_CHECKING, List, NamedTuple, Optional, Tuple

import numpy as np

from .errors import ModelError
from .model import ModelInfo

if TYPE_CHECKING:
    from .backends.base import Backend

YOLOV8 = "yolov8"
YOLOV8_T = "yolov8-transposed"  # [B, A, 4+nc], as some exporters write it
YOLOV5 = "yolov5"


class OutputLayout(NamedTuple):
    """Which family an output belongs to and how many classes it scores."""

    family: str
    num_classes: int
    anchors: int


def detect_layout(shape: tuple, num_labels: Optional[int] = None) -> OutputLayout:
    """Tell the layout from an output shape (batch first; dynamic dims as None/str/-1 are fine).

    With a labels file the class count disambiguates a transposed YOLOv8 output ``[B, A, 4+nc]``
    from YOLOv5's ``[B, A, 5+nc]``; without one, channels-first means YOLOv8 and channels-last YOLOv5.
    """
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(dims) != 3 or dims[1] is None or dims[2] is None:
        raise ModelError(
            f"unknown output layout {list(shape)}: expected [batch, 4+classes, anchors] (YOLOv8/YOLO11) "
            "or [batch, anchors, 5+classes] (YOLOv5)"
        )
    rows, cols = dims[1], dims[2]
    if num_labels is not None:
        # (family, anchors, classes) each reading of the shape would give
        for family, anchors, nc in ((YOLOV8, cols, rows - 4), (YOLOV8_T, rows, cols - 4), (YOLOV5, rows, cols - 5)):
            if nc == num_labels:
                return OutputLayout(family, nc, anchors)
        raise ModelError(
            f"output shape {list(shape)} does not fit {num_labels} labels: "
            f"YOLOv8 needs 4+{num_labels} channels, YOLOv5 needs 5+{num_labels}"
        )
    if rows < cols and rows > 4:
        return OutputLayout(YOLOV8, rows - 4, cols)
    if cols < rows and cols > 5:
        return OutputLayout(YOLOV5, cols - 5, rows)
    raise ModelError(f"unknown output layout {list(shape)}: too few channels for boxes and class scores")


def layout_for(model: ModelInfo, backend: "Backend") -> Tuple[ModelInfo, OutputLayout]:
    """The labels a run uses (the model's labels file, else the ONNX metadata the backend read) and the
    output layout told with their count: one rule for ``run``, ``bench`` and the golden outputs."""
    if model.labels is None and backend.metadata_labels:
        model = ModelInfo(model.path, model.sha256, backend.metadata_labels)
    return model, detect_layout(backend.output_shape, len(model.labels) if model.labels else None)


class Detections:
    """Detections of one image: x1,y1,x2,y2 boxes in input pixels, scores, class ids."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
        self.boxes = boxes
        self.scores = scores
        self.classes = classes

    def __repr__(self) -> str:
        return f"Detections(boxes={self.boxes!r}, scores={self.scores!r}, classes={self.classes!r})"

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _candidates(pred: np.ndarray, layout: OutputLayout, conf: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw rows → (cxcywh boxes, best score, best class) above the threshold.

    The best score is a cheap max over all anchors; the argmax runs only on the few that pass.
    """
    if layout.family == YOLOV8:
        boxes, scores_all = pred[:4, :].T, pred[4:, :].T
    elif layout.family == YOLOV8_T:
        boxes, scores_all = pred[:, :4], pred[:, 4:]
    else:
        boxes, scores_all = pred[:, :4], pred[:, 5:] * pred[:, 4:5]
    best = scores_all.max(axis=1)
    keep = np.flatnonzero(best > conf)
    return boxes[keep], best[keep], scores_all[keep].argmax(axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS over x1,y1,x2,y2 boxes; returns kept indices, best score first (stable order)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def decode(
    output: np.ndarray,
    layout: OutputLayout,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
) -> List[Detections]:
    """Decode a batch of raw outputs: score filter, cxcywh→xyxy, per-class NMS, top-k."""
    results = []
    for pred in np.asarray(output, dtype=np.float32):
        cxcywh, score, cls = _candidates(pred, layout, conf_threshold)
        boxes = np.empty_like(cxcywh)
        boxes[:, :2] = cxcywh[:, :2] - cxcywh[:, 2:] / 2
        boxes[:, 2:] = cxcywh[:, :2] + cxcywh[:, 2:] / 2
        # Per-class NMS in one pass: shift each class far apart so boxes of different classes never overlap.
        offset = cls.astype(np.float32)[:, None] * (float(boxes.max(initial=0.0)) + 1.0)
        keep = nms(boxes + offset, score, iou_threshold)[:max_detections]
        results.append(Detections(boxes[keep], score[keep].astype(np.float32), cls[keep].astype(np.int64)))
    return results

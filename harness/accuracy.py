"""mAP@0.5 the COCO way (greedy matching by score, 101-point interpolated precision), in numpy.

The suites score the board's detections on the harness host without pycocotools; a test checks
this against faster-coco-eval on the same data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: COCO's AP@0.5 (maxDets=100) scores only the 100 best detections per image and class
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class Box:
    """One detection or ground-truth box in image pixels (x1, y1, x2, y2); score 1 for ground truth."""

    class_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def _class_ap(
    detections: list[tuple[str, Box]], truth: Mapping[str, Sequence[Box]], class_id: int, thr: float
) -> float:
    gt = {image: [b for b in boxes if b.class_id == class_id] for image, boxes in truth.items()}
    total = sum(len(b) for b in gt.values())
    used = {image: [False] * len(boxes) for image, boxes in gt.items()}
    ordered = sorted(detections, key=lambda d: -d[1].score)
    hits = np.zeros(len(ordered))
    for i, (image, det) in enumerate(ordered):
        best, best_j = thr, -1
        for j, g in enumerate(gt.get(image, ())):
            overlap = iou(det, g)
            if not used[image][j] and overlap >= best:
                best, best_j = overlap, j
        if best_j >= 0:
            used[image][best_j] = True
            hits[i] = 1
    tp = np.cumsum(hits)
    recall = tp / total
    precision = tp / np.arange(1, len(ordered) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.array([envelope[i] if i < len(envelope) else 0.0 for i in index])
    return float(sampled.mean())


def map50(
    detections: Mapping[str, Sequence[Box]],
    truth: Mapping[str, Sequence[Box]],
    iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
) -> float:
    """Mean AP over the classes present in ``truth`` (COCO skips classes without ground truth).

    Like COCO's AP@0.5 (maxDets=100), only the ``max_detections`` best-scored detections per image and class count.
    """
    classes = sorted({b.class_id for boxes in truth.values() for b in boxes})
    if not classes:
        raise ValueError("no ground-truth boxes: cannot score mAP")
    aps = []
    for class_id in classes:
        dets = []
        for image, boxes in detections.items():
            mine = sorted((d for d in boxes if d.class_id == class_id), key=lambda d: -d.score)  # stable, as COCO's
            dets += [(image, d) for d in mine[:max_detections]]
        aps.append(_class_ap(dets, truth, class_id, iou_threshold))
    return float(np.mean(aps))

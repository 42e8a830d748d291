"""Layout detection and decode/NMS, checked against a deliberately naive reference decode."""

from __future__ import annotations

import numpy as np
import pytest

from module.decode import YOLOV5, YOLOV8, YOLOV8_T, decode, detect_layout, nms
from module.errors import ModelError


@pytest.mark.parametrize(
    ("shape", "labels", "family", "classes", "anchors"),
    [
        ((1, 84, 8400), None, YOLOV8, 80, 8400),
        (("batch", 84, 8400), 80, YOLOV8, 80, 8400),
        ((1, 10, 2100), 6, YOLOV8, 6, 2100),
        ((1, 8400, 84), 80, YOLOV8_T, 80, 8400),
        ((1, 25200, 85), None, YOLOV5, 80, 25200),
        ((1, 25200, 85), 80, YOLOV5, 80, 25200),
    ],
)
def test_layout_is_detected_from_the_output_shape(shape, labels, family, classes, anchors):
    layout = detect_layout(shape, labels)
    assert (layout.family, layout.num_classes, layout.anchors) == (family, classes, anchors)


@pytest.mark.parametrize(
    ("shape", "labels", "message"),
    [
        ((1, 10), None, "unknown output layout"),
        ((1, 84, 8400, 1), None, "unknown output layout"),
        ((1, 4, 3), None, "too few channels"),
        ((1, 84, 8400), 3, "does not fit 3 labels"),
    ],
)
def test_unknown_layouts_are_refused_with_a_clear_error(shape, labels, message):
    with pytest.raises(ModelError, match=message):
        detect_layout(shape, labels)


def reference_decode(pred: np.ndarray, conf: float, iou: float) -> list[tuple[int, float, tuple[float, ...]]]:
    """Straightforward per-class loops over a YOLOv8 [4+nc, A] prediction (the slow, obvious way)."""
    found = []
    for cls in range(pred.shape[0] - 4):
        cands = []
        for a in range(pred.shape[1]):
            best = int(np.argmax(pred[4:, a]))
            score = float(pred[4 + best, a])
            if best == cls and score > conf:
                cx, cy, w, h = (float(v) for v in pred[:4, a])
                cands.append((score, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
        cands.sort(key=lambda c: -c[0])
        kept: list[tuple[float, tuple[float, ...]]] = []
        for score, box in cands:
            if all(_iou(box, k[1]) <= iou for k in kept):
                kept.append((score, box))
        found += [(cls, s, b) for s, b in kept]
    return sorted(found, key=lambda d: -d[1])


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def random_prediction(seed: int, classes: int = 6, anchors: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pred = np.empty((4 + classes, anchors), dtype=np.float32)
    centres = rng.uniform(20, 300, (2, 8))  # clusters so that NMS has overlaps to resolve
    pick = rng.integers(0, 8, anchors)
    pred[0] = centres[0, pick] + rng.normal(0, 4, anchors)
    pred[1] = centres[1, pick] + rng.normal(0, 4, anchors)
    pred[2:4] = rng.uniform(10, 60, (2, anchors))
    pred[4:] = rng.uniform(0, 1, (classes, anchors)) ** 4
    return pred


@pytest.mark.parametrize("seed", range(5))
def test_decode_matches_the_naive_reference(seed):
    pred = random_prediction(seed)
    (got,) = decode(pred[None], detect_layout((1, *pred.shape)), conf_threshold=0.3, iou_threshold=0.5)
    want = reference_decode(pred, 0.3, 0.5)
    assert len(got) == len(want) > 0
    rows = zip(got.classes.tolist(), got.scores.tolist(), got.boxes.tolist(), strict=True)
    got_rows = sorted(rows, key=lambda d: -d[1])
    for (gc, gs, gb), (wc, ws, wb) in zip(got_rows, want, strict=True):
        assert gc == wc
        assert gs == pytest.approx(ws, abs=1e-6)
        assert gb == pytest.approx(list(wb), abs=1e-3)


def test_yolov5_layout_multiplies_objectness():
    pred = np.zeros((1, 3, 5 + 2), dtype=np.float32)
    pred[0, 0] = [50, 50, 20, 20, 0.9, 0.1, 0.8]  # 0.72 for class 1
    pred[0, 1] = [150, 150, 20, 20, 0.2, 0.9, 0.1]  # 0.18: below threshold
    pred[0, 2] = [52, 50, 20, 20, 0.5, 0.0, 0.9]  # 0.45, overlaps box 0 → suppressed
    (det,) = decode(pred, detect_layout(pred.shape, 2), conf_threshold=0.25, iou_threshold=0.5)
    assert det.classes.tolist() == [1]
    assert det.scores.tolist() == pytest.approx([0.72])
    assert det.boxes.tolist() == [[40, 40, 60, 60]]


def test_nms_keeps_the_best_of_overlapping_boxes_and_disjoint_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.4], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]


@pytest.mark.parametrize("seed", range(3))
def test_transposed_yolov8_output_decodes_like_the_standard_one(seed):
    pred = random_prediction(seed)
    (want,) = decode(pred[None], detect_layout((1, *pred.shape), 6), conf_threshold=0.3, iou_threshold=0.5)
    (got,) = decode(pred.T[None], detect_layout((1, *pred.T.shape), 6), conf_threshold=0.3, iou_threshold=0.5)
    assert len(got) == len(want) > 0
    np.testing.assert_array_equal(got.classes, want.classes)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.boxes, want.boxes)

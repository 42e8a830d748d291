"""harness.accuracy.map50 against faster-coco-eval, on real model output and on hand-made edge cases.

The suites score the board with the harness's own numpy mAP so the harness host needs no COCO toolkit; that is
only sound if it gives COCO's AP@0.5 (``stats[1]``: greedy matching by score, 101-point interpolation, classes
without ground truth skipped, at most 100 detections per image and class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster

from harness.accuracy import Box, map50
from module.backends import create_backend
from module.decode import decode, detect_layout
from module.model import load_model
from module.preprocess import letterbox
from module.synthetic import VAL_SEED0, render_scene

Boxes = Mapping[str, Sequence[Box]]
TOLERANCE = 1e-3


def coco_ap50(detections: Boxes, truth: Boxes) -> float:
    """AP@0.5 from faster-coco-eval; every image in ``truth`` is part of the set, also those without boxes."""
    names = list(truth)
    ids = {name: i + 1 for i, name in enumerate(names)}
    classes = sorted({b.class_id for boxes in (*truth.values(), *detections.values()) for b in boxes})
    gt: dict = {
        "images": [{"id": ids[name], "width": 10_000, "height": 10_000} for name in names],
        "annotations": [],
        "categories": [{"id": c + 1, "name": f"class{c}"} for c in classes],  # COCO ids from 1
    }
    for name, boxes in truth.items():
        for b in boxes:
            w, h = b.x2 - b.x1, b.y2 - b.y1
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,  # id 0 would read as "unmatched" in COCO's matching
                    "image_id": ids[name],
                    "category_id": b.class_id + 1,
                    "bbox": [b.x1, b.y1, w, h],  # x, y, width, height
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    dt = [
        {
            "image_id": ids[name],
            "category_id": d.class_id + 1,
            "bbox": [d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1],
            "score": d.score,
        }
        for name, boxes in detections.items()
        for d in boxes
    ]
    coco_gt = COCO(gt)
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(dt), iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[1])


# the real model ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_run() -> tuple[dict[str, list[Box]], dict[str, list[Box]]]:
    """(detections, truth) of the shipped model on 50 validation scenes at mAP settings (conf 0.001, NMS 0.6)."""
    scenes = [render_scene(VAL_SEED0 + i) for i in range(50)]
    with create_backend("onnxruntime", load_model(), batch=len(scenes), device="cpu") as backend:
        placed = [letterbox(scene.image, backend.input_hw) for scene in scenes]
        outputs = backend.infer(np.stack([tensor for tensor, _ in placed]))
        layout = detect_layout(backend.output_shape, 6)
    detections, truth = {}, {}
    for i, (scene, (_, box), det) in enumerate(zip(scenes, placed, decode(outputs, layout, 0.001, 0.6), strict=True)):
        name = f"val{i:03d}"
        image_boxes = box.to_image(det.boxes).tolist()
        found = zip(det.classes.tolist(), image_boxes, det.scores.tolist(), strict=True)
        detections[name] = [Box(c, *xyxy, score=s) for c, xyxy, s in found]
        truth[name] = [Box(c, *xyxy) for c, xyxy in zip(scene.classes.tolist(), scene.boxes.tolist(), strict=True)]
    return detections, truth


def test_real_model_detections(model_run: tuple[dict[str, list[Box]], dict[str, list[Box]]]) -> None:
    detections, truth = model_run
    assert sum(map(len, detections.values())) > sum(map(len, truth.values()))  # low threshold: FPs too
    ours, coco = map50(detections, truth), coco_ap50(detections, truth)
    assert 0.9 < coco < 1.0  # a realistic score with misses and false positives, not a trivial 1.0
    assert ours == pytest.approx(coco, abs=TOLERANCE)


def test_real_model_with_weaker_detections(model_run: tuple[dict[str, list[Box]], dict[str, list[Box]]]) -> None:
    """Boxes shifted by 0..50 % of their width: about a third drop below IoU 0.5 (past 1/3) and turn into FPs."""
    detections, truth = model_run
    rng = np.random.default_rng(0)
    shifted: dict[str, list[Box]] = {}
    for name, found in detections.items():
        dx = rng.uniform(0.0, 0.5, len(found))
        shifted[name] = [
            Box(d.class_id, d.x1 + s * (d.x2 - d.x1), d.y1, d.x2 + s * (d.x2 - d.x1), d.y2, d.score)
            for d, s in zip(found, dx, strict=True)
        ]
    coco = coco_ap50(shifted, truth)
    assert 0.2 < coco < 0.9
    assert map50(shifted, truth) == pytest.approx(coco, abs=TOLERANCE)


# hand-made edge cases ------------------------------------------------------------------------------------------------
def box(class_id: int, x: float, y: float, size: float = 10.0, score: float = 1.0) -> Box:
    return Box(class_id, x, y, x + size, y + size, score)


TRUTH: dict[str, list[Box]] = {
    "a": [box(0, 0, 0), box(0, 50, 50), box(1, 100, 100)],
    "b": [box(0, 0, 0), box(1, 30, 30), box(2, 70, 70)],
    "empty": [],  # an image without any ground truth
}

EDGE_CASES: dict[str, dict[str, list[Box]]] = {
    "perfect": {
        "a": [box(0, 0, 0, score=0.9), box(0, 50, 50, score=0.8), box(1, 100, 100, score=0.7)],
        "b": [box(0, 0, 0, score=0.6), box(1, 30, 30, score=0.5), box(2, 70, 70, score=0.4)],
    },
    "duplicates of one object": {
        "a": [box(0, 0, 0, score=0.9), box(0, 0, 0, score=0.85), box(0, 1, 0, score=0.95), box(1, 100, 100, score=0.3)],
        "b": [box(0, 0, 0, score=0.2), box(0, 0, 0, score=0.2), box(1, 30, 30, score=0.6), box(2, 70, 70, score=0.5)],
    },
    "a class with no detections": {  # class 2 has ground truth but is never detected: AP 0 for it
        "a": [box(0, 0, 0, score=0.9), box(1, 100, 100, score=0.7)],
        "b": [box(0, 0, 0, score=0.6), box(1, 30, 30, score=0.5)],
    },
    "detections on an image with no ground truth": {
        "a": [box(0, 0, 0, score=0.5), box(0, 50, 50, score=0.4), box(1, 100, 100, score=0.3)],
        "b": [box(0, 0, 0, score=0.35), box(1, 30, 30, score=0.25), box(2, 70, 70, score=0.2)],
        "empty": [box(0, 5, 5, score=0.9), box(1, 5, 5, score=0.45), box(2, 5, 5, score=0.1)],
    },
    "a class only detected, never in ground truth": {  # class 3: skipped, as COCO skips it
        "a": [box(0, 0, 0, score=0.9), box(3, 0, 0, score=0.99), box(1, 100, 100, score=0.3)],
        "b": [box(3, 30, 30, score=0.8), box(2, 70, 70, score=0.4)],
    },
    "IoU exactly 0.5 counts as a match": {
        "a": [Box(0, 0, 0, 10, 5, 0.9), Box(0, 50, 55, 60, 60, 0.8), box(1, 100, 100, score=0.7)],
        "b": [box(2, 70, 70, score=0.4)],
    },
    "a better-scored detection takes the object another fits best": {
        "a": [box(0, 2, 0, score=0.9), box(0, 0, 0, score=0.8), box(0, 52, 50, score=0.7)],
        "b": [box(0, 4, 0, score=0.95), box(1, 30, 30, score=0.5)],
    },
    "low-scored false positives then a late true positive": {
        "a": [box(0, 200, 200, score=0.9), box(0, 300, 300, score=0.8), box(0, 50, 50, score=0.1)],
        "b": [box(1, 400, 400, score=0.7), box(1, 30, 30, score=0.6), box(2, 70, 70, score=0.05)],
    },
    "no detections at all": {},
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases(case: str) -> None:
    detections = EDGE_CASES[case]
    ours, coco = map50(detections, TRUTH), coco_ap50(detections, TRUTH)
    assert ours == pytest.approx(coco, abs=TOLERANCE), f"harness {ours:.4f}, COCO {coco:.4f}"


def test_edge_case_values_are_what_coco_defines() -> None:
    """Pin a few by hand so that both tools agreeing on something wrong would still fail."""
    assert map50(EDGE_CASES["perfect"], TRUTH) == pytest.approx(1.0)
    assert map50(EDGE_CASES["a class with no detections"], TRUTH) == pytest.approx((2 / 3 + 1 + 0) / 3, abs=0.01)
    assert map50(EDGE_CASES["no detections at all"], TRUTH) == 0.0


def test_more_than_100_detections_of_one_class_in_one_image() -> None:
    """COCO's AP@0.5 keeps the 100 best-scored detections per image and class; the rest cannot add a hit."""
    truth = {"crowded": [box(0, 20 * i, 0) for i in range(20)] + [box(0, 1000, 1000)]}
    detections = {
        "crowded": [box(0, 20 * i, 500, score=0.9 - i * 0.001) for i in range(120)]  # 120 confident misses
        + [box(0, 20 * i, 0, score=0.5) for i in range(20)]  # then every object found, past the 100th
    }
    coco = coco_ap50(detections, truth)
    assert coco == 0.0
    assert map50(detections, truth) == pytest.approx(coco, abs=TOLERANCE)


def test_map50_refuses_an_empty_ground_truth() -> None:
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        map50({"x": [box(0, 0, 0)]}, {"x": []})

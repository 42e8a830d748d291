"""The shipped reference detector on held-out synthetic validation scenes, through the module's own code path.

Two claims are checked: the module's vectorised decode gives exactly what the obvious per-class loop gives on
real model outputs (not only on random tensors), and the model is as accurate as its model card says, scored
with an independent COCO implementation (faster-coco-eval) rather than the harness's own mAP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster

from module.backends import create_backend
from module.decode import Detections, OutputLayout, decode, detect_layout
from module.model import DEFAULT_MODEL, load_model
from module.preprocess import Letterbox, letterbox
from module.synthetic import CLASSES, VAL_SEED0, Scene, render_scene
from tests.module.test_decode import reference_decode

CARD = DEFAULT_MODEL.parent / "MODEL_CARD.md"
BATCH = 16
#: the mAP settings of the model card (and of module/training/evaluate.py)
MAP_CONF, MAP_IOU = 0.001, 0.6
QUICK_IMAGES = 100
DECODE_IMAGES = 25


def card_validation_result() -> tuple[int, float]:
    """(images, mAP@0.5) of the model card's validation run, read from the card so the test follows it."""
    text = CARD.read_text()
    images = re.search(r"render_scene\(VAL_SEED0 \+ i\)`, i = 0\.\.(\d+)", text)
    value = re.search(r"\|\s*mAP@0\.5\s*\|\s*\*\*[\d.]+\*\*\s*\((0\.\d+)\)", text)
    assert images and value, f"{CARD} no longer states its validation set and mAP@0.5 in the expected form"
    return int(images.group(1)) + 1, float(value.group(1))


CARD_IMAGES, CARD_MAP50 = card_validation_result()


@dataclass
class Evaluated:
    """Validation scenes with the raw model output of each and how each was letterboxed."""

    scenes: list[Scene]
    outputs: np.ndarray  # [N, 4+nc, A] float32, model-input pixels
    boxes: list[Letterbox]
    layout: OutputLayout


@pytest.fixture(scope="module")
def validation() -> Evaluated:
    """Run the card's whole validation set once through the module's letterbox and ONNX Runtime backend (FP32)."""
    model = load_model()
    scenes = [render_scene(VAL_SEED0 + i) for i in range(CARD_IMAGES)]
    outputs, boxes = [], []
    with create_backend("onnxruntime", model, precision="fp32", batch=BATCH, device="cpu") as backend:
        layout = detect_layout(backend.output_shape, len(model.labels or CLASSES))
        for first in range(0, len(scenes), BATCH):
            placed = [letterbox(scene.image, backend.input_hw) for scene in scenes[first : first + BATCH]]
            outputs.append(backend.infer(np.stack([tensor for tensor, _ in placed])))
            boxes += [box for _, box in placed]
    return Evaluated(scenes, np.concatenate(outputs), boxes, layout)


def test_model_and_labels_are_the_ones_the_card_describes(validation: Evaluated) -> None:
    assert load_model().labels == CLASSES
    assert (validation.layout.family, validation.layout.num_classes, validation.layout.anchors) == ("yolov8", 6, 2100)
    assert validation.outputs.shape == (CARD_IMAGES, 10, 2100)
    assert validation.outputs.dtype == np.float32


def by_score(row: tuple) -> tuple:
    """Best first; class then box break exact score ties, so both lists come out in one order."""
    return -row[1], row[0], tuple(row[2])


def test_decode_matches_the_naive_reference_on_real_outputs(validation: Evaluated) -> None:
    """Same classes, boxes and scores as the per-class loop, image by image, at the pipeline's default thresholds."""
    conf, iou = 0.25, 0.45
    total = 0
    for index in range(DECODE_IMAGES):
        box = validation.boxes[index]
        assert (box.scale, box.pad_x, box.pad_y) == (1.0, 0.0, 0.0)  # 320x320 scenes: model pixels are image pixels
        pred = validation.outputs[index]
        (got,) = decode(pred[None], validation.layout, conf_threshold=conf, iou_threshold=iou)
        want = reference_decode(pred, conf, iou)
        assert len(got) == len(want), f"image {index}: {len(got)} detections, reference has {len(want)}"
        rows = zip(got.classes.tolist(), got.scores.tolist(), got.boxes.tolist(), strict=True)
        for (gc, gs, gb), (wc, ws, wb) in zip(sorted(rows, key=by_score), sorted(want, key=by_score), strict=True):
            assert gc == wc, f"image {index}"
            assert gs == pytest.approx(ws, abs=1e-6), f"image {index}"
            assert gb == pytest.approx(list(wb), abs=1e-4), f"image {index}"
        total += len(got)
    objects = sum(len(scene.classes) for scene in validation.scenes[:DECODE_IMAGES])
    assert total >= 0.8 * objects  # real detections were compared, not empty lists


def coco_map(validation: Evaluated, images: int) -> tuple[float, float]:
    """(AP@0.5, AP@0.5:0.95) from faster-coco-eval for the first ``images`` scenes, decoded as the card says."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]  # COCO ids 1-based
    gt: dict = {"images": [], "annotations": [], "categories": categories}
    dt: list[dict] = []
    decoded: list[Detections] = decode(validation.outputs[:images], validation.layout, MAP_CONF, MAP_IOU)
    placed = zip(validation.scenes[:images], decoded, validation.boxes[:images], strict=True)
    for index, (scene, det, box) in enumerate(placed):
        image_id = index + 1
        height, width = scene.image.shape[:2]
        gt["images"].append({"id": image_id, "width": width, "height": height})
        for (x1, y1, x2, y2), cls in zip(scene.boxes.tolist(), scene.classes.tolist(), strict=True):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,  # 0 would read as "unmatched" in COCO's matching
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],  # COCO boxes are x, y, width, height
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        found = zip(box.to_image(det.boxes).tolist(), det.scores.tolist(), det.classes.tolist(), strict=True)
        for (x1, y1, x2, y2), score, cls in found:
            dt.append(
                {"image_id": image_id, "category_id": cls + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    assert len(gt["images"]) == images and dt
    coco_gt = COCO(gt)
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(dt), iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[1]), float(evaluator.stats[0])


def test_map50_on_held_out_scenes(validation: Evaluated) -> None:
    map50, map50_95 = coco_map(validation, QUICK_IMAGES)
    assert map50 >= 0.90
    assert 0.0 < map50_95 <= map50


def test_map50_matches_the_model_card(validation: Evaluated) -> None:
    """On the card's own set (all of it), within 0.005 of the number it states."""
    map50, _ = coco_map(validation, CARD_IMAGES)
    assert map50 >= 0.90
    assert map50 == pytest.approx(CARD_MAP50, abs=0.005), f"card says {CARD_MAP50} on {CARD_IMAGES} images"

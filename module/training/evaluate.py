"""Evaluate a YOLOv8-layout ONNX detector on the held-out synthetic validation scenes (COCO mAP).

Uses only numpy + onnxruntime + faster-coco-eval, so it runs without PyTorch:
    python -m module.training.evaluate --model module/models/shapes-det.onnx --images 500 --bench
The decode (best class per anchor, class-aware greedy NMS) mirrors what a YOLOv8 deployment does, at the
usual mAP settings: confidence 0.001, NMS IoU 0.6, at most 300 detections per image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from faster_coco_eval import COCO, COCOeval_faster

from module.synthetic import CLASSES, VAL_SEED0, render_scene

CONF = 0.001
NMS_IOU = 0.6
MAX_DET = 300
MAX_NMS = 30_000


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS over xyxy boxes; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        wh = np.clip(np.minimum(boxes[i, 2:], boxes[rest, 2:]) - np.maximum(boxes[i, :2], boxes[rest, :2]), 0, None)
        inter = wh[:, 0] * wh[:, 1]
        order = rest[inter / (areas[i] + areas[rest] - inter + 1e-9) <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def decode(output: np.ndarray, conf: float = CONF, iou: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``output0`` (4+nc, A) -> xyxy boxes (N,4), scores (N,), classes (N,)."""
    scores_all = output[4:]
    classes = scores_all.argmax(0)
    scores = scores_all[classes, np.arange(scores_all.shape[1])]
    mask = scores > conf
    cx, cy, w, h = output[:4, mask]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    scores, classes = scores[mask], classes[mask]
    top = np.argsort(-scores, kind="stable")[:MAX_NMS]
    boxes, scores, classes = boxes[top], scores[top], classes[top]
    # Offsetting each class far apart makes one NMS pass class-aware.
    keep = nms(boxes + classes[:, None] * 4096.0, scores, iou)[:MAX_DET]
    return boxes[keep], scores[keep], classes[keep]


def _session(model: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def evaluate(model: Path, images: int = 500, batch: int = 16, threads: int = 0) -> dict[str, float]:
    """COCO bbox mAP of ``model`` on validation seeds VAL_SEED0..VAL_SEED0+images-1; prints and returns it."""
    session = _session(model, threads)
    input_name = session.get_inputs()[0].name
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]}
    detections = []
    for first in range(0, images, batch):
        scenes = [render_scene(VAL_SEED0 + i) for i in range(first, min(first + batch, images))]
        x = np.stack([s.image for s in scenes]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        outputs = session.run(None, {input_name: x})[0]
        for offset, (scene, output) in enumerate(zip(scenes, outputs)):
            image_id = first + offset
            height, width = scene.image.shape[:2]
            gt["images"].append({"id": image_id, "width": width, "height": height})
            for box, cls in zip(scene.boxes.tolist(), scene.classes.tolist()):
                w, h = box[2] - box[0], box[3] - box[1]
                gt["annotations"].append(
                    {
                        "id": len(gt["annotations"]) + 1,
                        "image_id": image_id,
                        "category_id": cls,
                        "bbox": [box[0], box[1], w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
            for box, score, cls in zip(*(a.tolist() for a in decode(output))):
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": cls,
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                        "score": score,
                    }
                )
    coco_gt = COCO(gt)
    coco_eval = COCOeval_faster(coco_gt, coco_gt.loadRes(detections), iouType="bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    result = {"mAP50": float(coco_eval.stats[1]), "mAP50-95": float(coco_eval.stats[0])}
    print(
        f"{model.name}: {images} validation images  mAP@0.5 {result['mAP50']:.4f}  "
        f"mAP@0.5:0.95 {result['mAP50-95']:.4f}",
        flush=True,
    )
    return result


def benchmark(model: Path, runs: int = 200, threads: int = 1) -> float:
    """Median latency in ms of one 320x320 image (batch 1) on ``threads`` CPU threads; prints it."""
    session = _session(model, threads)
    x = (render_scene(VAL_SEED0).image.transpose(2, 0, 1)[None].astype(np.float32)) / 255.0
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(20):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    ms = float(np.median(times) * 1e3)
    print(f"{model.name}: onnxruntime CPU, {threads} thread(s), batch 1: median {ms:.2f} ms/image", flush=True)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models/shapes-det.onnx")
    parser.add_argument("--images", type=int, default=500, help="validation scenes from VAL_SEED0")
    parser.add_argument("--bench", action="store_true", help="also time single-thread CPU inference")
    args = parser.parse_args()
    evaluate(args.model, args.images)
    if args.bench:
        benchmark(args.model)


if __name__ == "__main__":
    main()

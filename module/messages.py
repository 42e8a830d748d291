"""The message the module sends per frame (schema ``jetson-hil.detections/1``).

Every message carries the run id, the outbox's persistent sequence number (``seq``, filled in
by the outbox), the frame id, per-stage timestamps, the model hash and the detections in
original-image pixels. Consumers that index DeepStream's minimal schema get ``objects`` too.
"""

from .decode import Detections
from .model import ModelInfo
from .sources import Frame

SCHEMA = "jetson-hil.detections/1"


def detection_message(run_id: str, frame: Frame, detections: Detections, model: ModelInfo) -> dict:
    height, width = frame.image.shape[:2]
    items = []
    for box, score, class_id in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.classes.tolist()):
        items.append(
            {
                "class_id": int(class_id),
                "label": model.label(int(class_id)),
                "score": round(float(score), 5),
                "box": [round(v, 2) for v in box],
            }
        )
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "frame_id": frame.frame_id,
        "source": frame.name,
        "ts": {k: round(v, 6) for k, v in frame.ts.items()},
        "image": {"width": int(width), "height": int(height)},
        "model_sha256": model.sha256,
        "detections": items,
        # DeepStream minimal schema: "trackingId|left|top|right|bottom|label" (no tracker: id -1).
        "objects": ["-1|{:.0f}|{:.0f}|{:.0f}|{:.0f}|{}".format(*d["box"], d["label"]) for d in items],
    }

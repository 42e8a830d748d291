"""Fixture images, their labels and the FP32 golden detections the correctness suite compares against.

Images are synthetic validation scenes of the reference model (drawn from seeds, no download);
golden detections are computed on the harness host with ONNX Runtime at FP32 through the
module's own preprocessing and decode, so the board must reproduce them within tolerance.
``hil golden`` regenerates all three.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2

from harness.accuracy import Box, map50
from harness.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: score threshold of the golden run: low, as for mAP; matching only looks at confident boxes
GOLDEN_CONF = 0.001
GOLDEN_IOU = 0.6
DEFAULT_COUNT = 32


@dataclass(frozen=True)
class FixtureSet:
    """Where the fixture files live (the repo's fixtures/ unless told otherwise)."""

    root: Path = FIXTURES

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def golden(self) -> Path:
        return self.root / "golden" / "detections.json"

    def load_labels(self) -> dict[str, list[Box]]:
        return {name: boxes_from_json(rows) for name, rows in _read_json(self.labels)["images"].items()}

    def load_golden(self) -> dict:
        return _read_json(self.golden)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "", "missing: run `hil golden` to generate the fixtures") from None
    except ValueError as exc:
        raise ConfigError(path, "", f"not valid JSON ({exc}): run `hil golden` to regenerate it") from None


def _boxes_json(boxes: Iterable[Box]) -> list[list[float]]:
    return [[b.class_id, *(round(v, 2) for v in (b.x1, b.y1, b.x2, b.y2)), round(b.score, 5)] for b in boxes]


def write_images(fixtures: FixtureSet, count: int = DEFAULT_COUNT) -> None:
    """Render ``count`` held-out validation scenes to PNG (lossless: the board decodes identical pixels)."""
    from module.synthetic import CLASSES, VAL_SEED0, render_scene

    fixtures.images.mkdir(parents=True, exist_ok=True)
    for old in fixtures.images.glob("*.png"):
        old.unlink()
    labels = {}
    for i in range(count):
        scene = render_scene(VAL_SEED0 + i)
        name = f"val-{i:03d}.png"
        cv2.imwrite(str(fixtures.images / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        labels[name] = _boxes_json(
            Box(int(c), *map(float, b)) for b, c in zip(scene.boxes.tolist(), scene.classes.tolist(), strict=True)
        )
    fixtures.labels.write_text(json.dumps({"classes": list(CLASSES), "seed0": VAL_SEED0, "images": labels}, indent=1))


def golden_detections(fixtures: FixtureSet, model_path: Path | None = None) -> dict:
    """Run the model at FP32 on ONNX Runtime over the fixture images, as the module does on a board."""
    from module.backends import create_backend
    from module.decode import decode, layout_for
    from module.model import load_model
    from module.preprocess import letterbox
    from module.sources import list_images, read_image

    model = load_model(model_path)
    images = {}
    with create_backend("onnxruntime", model, device="cpu") as backend:
        layout = layout_for(model, backend)[1]
        for path in list_images(fixtures.images):
            tensor, box = letterbox(read_image(path), backend.input_hw)
            (det,) = decode(backend.infer(tensor[None]), layout, GOLDEN_CONF, GOLDEN_IOU)
            boxes = box.to_image(det.boxes)
            images[path.name] = _boxes_json(
                Box(int(c), *map(float, b), score=float(s))
                for b, s, c in zip(boxes.tolist(), det.scores.tolist(), det.classes.tolist(), strict=True)
            )
    return {
        "model_sha256": model.sha256,
        "backend": "onnxruntime-cpu-fp32",
        "conf_threshold": GOLDEN_CONF,
        "iou_threshold": GOLDEN_IOU,
        "images": images,
    }


def write_golden(fixtures: FixtureSet, model_path: Path | None = None) -> dict:
    """Golden detections plus their mAP@0.5 on the labelled images (the number the model card quotes)."""
    golden = golden_detections(fixtures, model_path)
    detections = {name: boxes_from_json(rows) for name, rows in golden["images"].items()}
    golden["map50"] = round(map50(detections, fixtures.load_labels()), 5)
    fixtures.golden.parent.mkdir(parents=True, exist_ok=True)
    fixtures.golden.write_text(json.dumps(golden, indent=1))
    return golden


def boxes_from_json(rows: list[list[float]]) -> list[Box]:
    return [Box(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

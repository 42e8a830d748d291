"""Fixture images, their labels and the FP32 golden detections the correctness suite compares against.

Images are synthetic validation scenes of the reference model (drawn from seeds, no download) at
four sizes, so that the letterbox scales up, scales down, pads either way or passes through.
Golden detections come from `harness.reference`: the model run by OpenCV's DNN module with the
model card's pre- and post-processing written again, sharing no code with the module, so a bug in
the module's letterbox or decode shows on every board. They are pinned to the model's hash.
``hil golden`` regenerates all three.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2

from harness.accuracy import Box, iou, map50
from harness.errors import ConfigError, HarnessError
from harness.reference import ReferenceDetector, input_size

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: score threshold of the golden run: low, as for mAP; matching only looks at confident boxes
GOLDEN_CONF = 0.001
GOLDEN_IOU = 0.6
DEFAULT_COUNT = 32
#: (width, height) of fixture image i is FIXTURE_SIZES[i % 4]: native, pad-only (portrait), up- and downscaled
FIXTURE_SIZES = ((320, 320), (240, 320), (256, 192), (336, 252))


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

    def golden_boxes(self) -> dict[str, list[Box]]:
        return {name: boxes_from_json(rows) for name, rows in self.load_golden()["images"].items()}


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
        scene = render_scene(VAL_SEED0 + i, *FIXTURE_SIZES[i % len(FIXTURE_SIZES)])
        name = f"val-{i:03d}.png"
        cv2.imwrite(str(fixtures.images / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        labels[name] = _boxes_json(
            Box(int(c), *map(float, b)) for b, c in zip(scene.boxes.tolist(), scene.classes.tolist(), strict=True)
        )
    fixtures.labels.write_text(json.dumps({"classes": list(CLASSES), "seed0": VAL_SEED0, "images": labels}, indent=1))


def golden_detections(fixtures: FixtureSet, model_path: Path | None = None) -> dict:
    """Run the model through the independent reference detector over the fixture images."""
    from module.errors import ModuleError
    from module.model import load_model
    from module.sources import list_images

    try:
        model = load_model(model_path)
        paths = list_images(fixtures.images)
    except ModuleError as exc:
        raise HarnessError(str(exc)) from None
    detector = ReferenceDetector(model.path)
    size = input_size(model.path)
    images = {}
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        images[path.name] = _boxes_json(detector.detect(rgb, size, GOLDEN_CONF, GOLDEN_IOU))
    return {
        "model_sha256": model.sha256,
        "reference": f"{detector.runtime}, letterbox and decode of harness/reference.py",
        "conf_threshold": GOLDEN_CONF,
        "iou_threshold": GOLDEN_IOU,
        "images": images,
    }


def write_golden(fixtures: FixtureSet, model_path: Path | None = None) -> dict:
    """Golden detections plus the reference's own mAP@0.5 on the labelled images (for information: the
    correctness suite's floor comes from the model card, not from this file)."""
    golden = golden_detections(fixtures, model_path)
    detections = {name: boxes_from_json(rows) for name, rows in golden["images"].items()}
    golden["map50"] = round(map50(detections, fixtures.load_labels()), 5)
    fixtures.golden.parent.mkdir(parents=True, exist_ok=True)
    fixtures.golden.write_text(json.dumps(golden, indent=1))
    return golden


def boxes_from_json(rows: list[list[float]]) -> list[Box]:
    return [Box(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]


@dataclass(frozen=True)
class Tolerance:
    """How close a board detection must be to its golden twin: IoU, score, and which ones must match."""

    min_iou: float
    max_score_delta: float
    confident: float = 0.5  # golden boxes above this score must be found


#: per precision: FP32 must reproduce the FP32 reference; reduced precisions may move boxes and scores a little
TOLERANCES = {"fp32": Tolerance(0.99, 0.01), "fp16": Tolerance(0.9, 0.05), "int8": Tolerance(0.8, 0.1)}


@dataclass(frozen=True)
class GoldenMatch:
    """How many confident golden detections a run reproduced, and what went wrong with the others."""

    expected: int
    matched: int
    worst_score_delta: float
    problems: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.matched / max(self.expected, 1)


def match_golden(golden: dict[str, list[Box]], got: dict[str, list[Box]], tol: Tolerance) -> GoldenMatch:
    """Each confident golden box needs a same-class detection with IoU >= min_iou and a close score."""
    problems: list[str] = []
    matched = expected = 0
    worst_delta = 0.0
    for image, boxes in golden.items():
        candidates = [d for d in got.get(image, []) if d.score >= tol.confident * 0.5]
        for want in (b for b in boxes if b.score >= tol.confident):
            expected += 1
            best = max((d for d in candidates if d.class_id == want.class_id), key=lambda d: iou(d, want), default=None)
            overlap = iou(best, want) if best is not None else 0.0
            if best is None or overlap < tol.min_iou:
                problems.append(f"{image}: class {want.class_id} at {want.x1:.0f},{want.y1:.0f} not found "
                                f"(best IoU {overlap:.3f} < {tol.min_iou})")
                continue
            delta = abs(best.score - want.score)
            worst_delta = max(worst_delta, delta)
            if delta > tol.max_score_delta:
                problems.append(f"{image}: class {want.class_id} score {best.score:.3f} vs golden {want.score:.3f}")
                continue
            matched += 1
    return GoldenMatch(expected, matched, worst_delta, tuple(problems))

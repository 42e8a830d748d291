"""The correctness references are independent of the code under test: the model card and the reference detector."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.accuracy import Box
from harness.errors import HarnessError
from harness.golden import GOLDEN_CONF, GOLDEN_IOU, TOLERANCES, FixtureSet, match_golden
from harness.model_card import card_path, load_card
from harness.reference import ReferenceDetector, input_size
from module.model import DEFAULT_MODEL, file_sha256
from tests.module.onnx_models import flat_output, yolov8_like
from tests.module_copies import BROKEN_LETTERBOX, module_copy

REPO = Path(__file__).resolve().parents[1]


def test_the_card_describes_the_shipped_model_and_agrees_with_its_text() -> None:
    card = load_card(DEFAULT_MODEL)
    assert card.model_sha256 == file_sha256(DEFAULT_MODEL)
    assert card.model == DEFAULT_MODEL.name
    text = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text().replace("**", "")
    for figure in (card.model_sha256, str(card.evaluation.map50), str(card.evaluation.map50_95),
                   f"mAP@0.5 floor of {card.floors.map50}"):
        assert figure in text, f"MODEL_CARD.md does not state {figure} of {card_path(DEFAULT_MODEL).name}"


def test_the_shipped_model_clears_its_floor_on_the_fixtures() -> None:
    golden = FixtureSet().load_golden()
    assert golden["model_sha256"] == file_sha256(DEFAULT_MODEL)
    assert golden["map50"] >= load_card(DEFAULT_MODEL).floors.map50  # scored from the independent reference


def test_the_reference_imports_nothing_of_the_module() -> None:
    tree = ast.parse((REPO / "harness" / "reference.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name == "module" or name.startswith("module.")], imported


@pytest.mark.parametrize("broken", [False, True], ids=["module-as-shipped", "letterbox-one-pixel-off"])
def test_module_detections_against_the_reference_golden(tmp_path: Path, broken: bool) -> None:
    """What the suite does on a board, here on the host: the module's own run over the fixtures at FP32."""
    fixtures = FixtureSet()
    app = module_copy(tmp_path, BROKEN_LETTERBOX) if broken else REPO / "module"
    out = tmp_path / "detections.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "module", "run", "--source", f"images:{fixtures.images}", "--sink", f"jsonl:{out}",
         "--exit-when-done", "--api-port", "0", "--state-dir", str(tmp_path / "state"), "--backend", "onnxruntime",
         "--conf", str(GOLDEN_CONF), "--iou", str(GOLDEN_IOU)],
        cwd=app.parent, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    got = {}
    for line in out.read_text().splitlines():
        message = json.loads(line)
        got[message["source"]] = [Box(d["class_id"], *d["box"], score=d["score"]) for d in message["detections"]]
    found = match_golden(fixtures.golden_boxes(), got, TOLERANCES["fp32"])
    if broken:  # every image, native size or not, maps its boxes back one pixel off
        assert found.matched < found.expected * 0.5 and "best IoU" in found.problems[0]
    else:
        assert found.problems == () and found.expected > 100


def test_the_reference_reads_a_users_yolov8_export_and_refuses_other_layouts(tmp_path: Path) -> None:
    user = yolov8_like(tmp_path / "user80.onnx", size=320)
    image = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert input_size(user) == (320, 320)
    found = ReferenceDetector(user).detect(image, (320, 320), 0.001, 0.6)
    assert found and {b.class_id for b in found} <= set(range(80))
    assert all(0 <= b.x1 <= b.x2 <= 320 and 0 <= b.y1 <= b.y2 <= 240 for b in found)  # in image pixels, clipped
    with pytest.raises(HarnessError, match=r"output \[1, 10\] is not the YOLOv8 layout"):
        ReferenceDetector(flat_output(tmp_path / "flat.onnx")).detect(image, (64, 64), 0.001, 0.6)

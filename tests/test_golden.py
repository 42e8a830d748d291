"""The committed fixtures are what `hil golden` produces: images from their seeds, golden detections from the model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.golden import FixtureSet, write_golden, write_images


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> FixtureSet:
    committed = FixtureSet()
    fresh = FixtureSet(tmp_path_factory.mktemp("fixtures"))
    write_images(fresh, count=len(list(committed.images.glob("*.png"))))
    write_golden(fresh)
    return fresh


def test_images_and_labels_are_reproduced_from_their_seeds(regenerated: FixtureSet) -> None:
    committed = FixtureSet()
    for path in sorted(committed.images.glob("*.png")):
        again = regenerated.images / path.name
        assert np.array_equal(cv2.imread(str(path)), cv2.imread(str(again))), f"{path.name} differs from its seed"
    assert json.loads(committed.labels.read_text()) == json.loads(regenerated.labels.read_text())


def test_golden_detections_are_reproduced_by_the_model(regenerated: FixtureSet) -> None:
    committed, fresh = FixtureSet().load_golden(), regenerated.load_golden()
    assert fresh["model_sha256"] == committed["model_sha256"], "model changed: run `hil golden --keep-images`"
    assert fresh["map50"] == pytest.approx(committed["map50"], abs=1e-4)
    for image, rows in committed["images"].items():
        again = fresh["images"][image]
        assert len(again) == len(rows), image
        for want, got in zip(rows, again, strict=True):
            assert got[0] == want[0] and got[1:5] == pytest.approx(want[1:5], abs=0.05) and got[5] == pytest.approx(
                want[5], abs=1e-3
            ), (image, want, got)


@pytest.mark.parametrize(("model", "says"), [("missing.onnx", "not found"), ("junk.onnx", "cannot read it")])
def test_hil_golden_on_a_bad_model_is_one_line(tmp_path: Path, model: str, says: str) -> None:
    (tmp_path / "junk.onnx").write_text("not a model")
    (tmp_path / "images").mkdir()
    shutil.copy(next(FixtureSet().images.glob("*.png")), tmp_path / "images")
    done = subprocess.run([sys.executable, "-m", "harness", "golden", "--keep-images", "--fixtures", str(tmp_path),
                           "--model", str(tmp_path / model)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr

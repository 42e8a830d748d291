"""The threaded pipeline on ONNX Runtime: every frame out, stage timestamps, batching, errors, stop."""

from __future__ import annotations

import itertools
import time

import pytest

from module.backends import create_backend
from module.bench import sample_images
from module.decode import detect_layout
from module.errors import SourceError
from module.model import load_model
from module.pipeline import Pipeline, PipelineConfig
from module.sources import cycle, open_source, synthetic
from tests.module.onnx_models import COCO80, yolov8_like

ORDER = ("capture", "pre", "infer_start", "infer_end", "post", "emit")


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory):
    """A user's 80-class YOLOv8-layout export (640x640, names in the ONNX metadata)."""
    return load_model(yolov8_like(tmp_path_factory.mktemp("m") / "user80.onnx", names=COCO80))


def _run(model, frames, batch=1, config=None):
    out = []
    with create_backend("onnxruntime", model, batch=batch) as backend:
        layout = detect_layout(backend.output_shape)
        pipeline = Pipeline(backend, layout, frames, lambda f, d: out.append((f, d)), config, batch=batch).start()
        assert pipeline.join(timeout=60)
    return out, pipeline


@pytest.mark.parametrize("batch", [1, 4])
def test_every_frame_comes_out_once_in_order_with_stage_timestamps(coco_model, batch):
    out, pipeline = _run(coco_model, cycle(sample_images(4), 10), batch=batch)
    assert [f.frame_id for f, _ in out] == list(range(10))
    for frame, _ in out:
        stamps = [frame.ts[k] for k in ORDER]
        assert stamps == sorted(stamps), frame.ts
    assert pipeline.stats.snapshot()["frames"] == 10


def test_user_model_labels_come_from_onnx_metadata(coco_model):
    with create_backend("onnxruntime", coco_model) as backend:
        assert backend.metadata_labels == tuple(COCO80)
        assert detect_layout(backend.output_shape).num_classes == 80


def test_a_failing_source_stops_the_pipeline_and_surfaces_its_error(coco_model):
    def broken():
        yield from cycle(sample_images(1), 2)
        raise SourceError("camera unplugged")

    with pytest.raises(SourceError, match="camera unplugged"):
        _run(coco_model, broken())


def test_stop_ends_an_endless_source_within_a_bound(coco_model):
    with create_backend("onnxruntime", coco_model) as backend:
        pipeline = Pipeline(backend, detect_layout(backend.output_shape), synthetic(None), lambda f, d: None).start()
        deadline = time.monotonic() + 30
        while pipeline.stats.frames < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipeline.stats.frames >= 2
        pipeline.stop()
        assert pipeline.join(timeout=5)


def test_fps_cap_paces_the_source(coco_model):
    started = time.monotonic()
    out, _ = _run(coco_model, cycle(sample_images(1), 6), config=PipelineConfig(fps_cap=10))
    assert len(out) == 6
    assert time.monotonic() - started >= 0.5  # 6 frames at 10 fps: at least 5 intervals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nope": 1}, "unknown config field 'nope'"),
        ({"conf_threshold": 2}, "within 0..1"),
        ({"fps_cap": "x"}, "number"),
    ],
)
def test_config_updates_are_validated(changes, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig().update(changes)


@pytest.mark.parametrize("spec", ["images:/nonexistent", "video:/nonexistent.mp4", "bogus"])
def test_bad_source_specs_fail_at_open(spec):
    with pytest.raises(SourceError):
        open_source(spec)


def test_synthetic_source_is_deterministic():
    a = [f.image for f in itertools.islice(synthetic(3), 3)]
    b = [f.image for f in itertools.islice(synthetic(3), 3)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))

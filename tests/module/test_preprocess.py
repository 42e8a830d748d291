"""Letterbox against the obvious implementation (full canvas, paste, HWC→CHW, scale), bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from module import preprocess
from module.preprocess import PAD_VALUE, letterbox


def reference_letterbox(image: np.ndarray, size: int, resize) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    x, y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[y : y + new_h, x : x + new_w] = resize(image, new_w, new_h) if (new_w, new_h) != (w, h) else image
    return canvas.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)


SHAPES = [(480, 640), (640, 480), (320, 320), (100, 300), (333, 211), (1, 5), (719, 1281)]


def _cv2_resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("shape", SHAPES)
def test_letterbox_equals_the_reference_and_overwrites_a_reused_buffer(shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    want = reference_letterbox(image, 320, _cv2_resize)
    dirty = np.full((3, 320, 320), np.nan, dtype=np.float32)  # a buffer the previous frame used
    got, box = letterbox(image, (320, 320), out=dirty)
    assert got is dirty
    np.testing.assert_array_equal(got, want)
    corners = np.array([[0, 0, shape[1], shape[0]]], dtype=np.float32)
    placed = corners * box.scale + [box.pad_x, box.pad_y, box.pad_x, box.pad_y]
    np.testing.assert_allclose(box.to_image(placed), corners, atol=1e-3)


def test_boxes_reaching_into_the_padding_are_clipped_to_the_image():
    _, box = letterbox(np.zeros((192, 256, 3), dtype=np.uint8), (320, 320))  # 320x240 placed 40 px down
    outside = np.array([[-10.0, 20.0, 100.0, 300.0], [300.0, 35.0, 330.0, 50.0]], dtype=np.float32)
    np.testing.assert_allclose(box.to_image(outside), [[0, 0, 80, 192], [240, 0, 256, 8]], atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_letterbox_without_opencv_fills_the_same_planes(monkeypatch, shape):
    monkeypatch.setattr(preprocess, "cv2", None)
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    want = reference_letterbox(image, 320, preprocess._resize)
    np.testing.assert_array_equal(letterbox(image, (320, 320))[0], want)


def test_letterbox_refuses_a_non_rgb_image():
    with pytest.raises(ValueError, match="HxWx3"):
        letterbox(np.zeros((10, 10), dtype=np.uint8), (320, 320))

"""Synthetic training set: rendered once in parallel into dense arrays, augmented per batch on the device.

Rendering costs ~17 ms per scene, far too slow to redo every epoch on a few cores, so a fixed set of seeds is
rendered once (in seed order, whatever the worker count) and variety comes from flips and 90 degree turns, which
keep every class's name (see module.synthetic).
"""

from __future__ import annotations

from multiprocessing import Pool

import numpy as np
import torch

from module.synthetic import MAX_OBJECTS, render_scene


def _render(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scene = render_scene(seed)
    boxes = np.zeros((MAX_OBJECTS, 4), dtype=np.float32)
    classes = np.full(MAX_OBJECTS, -1, dtype=np.int64)
    boxes[: len(scene.classes)] = scene.boxes
    classes[: len(scene.classes)] = scene.classes
    return scene.image, boxes, classes


def render_dataset(seed0: int, count: int, workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N,H,W,3) uint8, boxes (N,MAX_OBJECTS,4) float32 and classes (N,MAX_OBJECTS) int64 (-1 = none)."""
    first = _render(seed0)
    images = np.empty((count, *first[0].shape), dtype=np.uint8)
    boxes = np.empty((count, MAX_OBJECTS, 4), dtype=np.float32)
    classes = np.empty((count, MAX_OBJECTS), dtype=np.int64)
    with Pool(workers) as pool:
        for i, (image, b, c) in enumerate(pool.imap(_render, range(seed0, seed0 + count), chunksize=32)):
            images[i], boxes[i], classes[i] = image, b, c
    return images, boxes, classes


def augment(images: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-image horizontal/vertical flips and a per-batch transpose of square images (B,3,S,S) + boxes."""
    size = images.shape[-1]
    flips = torch.rand(2, images.shape[0], generator=generator).to(images.device) < 0.5
    boxes = boxes.clone()
    for axis, flip in enumerate(flips):  # axis 0: x (image dim 3), axis 1: y (image dim 2)
        images = torch.where(flip[:, None, None, None], images.flip(3 - axis), images)
        mirrored = size - boxes[..., [axis + 2, axis]]
        boxes[..., [axis, axis + 2]] = torch.where(flip[:, None, None], mirrored, boxes[..., [axis, axis + 2]])
    if torch.rand(1, generator=generator).item() < 0.5:
        images = images.transpose(2, 3)
        boxes = boxes[..., [1, 0, 3, 2]]
    return images, boxes

"""Tiny anchor-free detector whose exported output follows the Ultralytics YOLOv8 layout.

The board-side decode and the TensorRT/ONNX Runtime backends are written against YOLOv8 exports, so this model
emits the same single tensor ``output0`` [B, 4+nc, A]: rows 0..3 are cx, cy, w, h in input pixels, rows 4.. are
per-class sigmoid scores (no objectness); anchors are the cells of strides 8, 16, 32 in row-major order.
About 0.33 GMAC per 320x320 image: ReLU (fused by every runtime, INT8-friendly), a light top-down FPN and one
shared regression/classification branch per level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (8, 16, 32)
IMAGE_SIZE = 320


class ConvBnAct(nn.Sequential):
    """Conv + BatchNorm + ReLU; the BatchNorm folds into the conv at export."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Bottleneck(nn.Module):
    """Residual 1x1-reduce / 3x3-expand block: depth at a third of the cost of a plain 3x3 pair."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBnAct(channels, hidden, 1), ConvBnAct(hidden, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def make_anchors(image_size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres (A, 2) in pixels and their strides (A,), in YOLOv8 order (P3 first, row-major)."""
    points, strides = [], []
    for stride in STRIDES:
        n = image_size // stride
        c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        points.append(torch.stack([xx.flatten(), yy.flatten()], 1))
        strides.append(torch.full((n * n,), float(stride)))
    return torch.cat(points), torch.cat(strides)


class ShapesDet(nn.Module):
    """Backbone (/8, /16, /32) + top-down FPN + per-level heads; ``forward`` returns the YOLOv8 ``output0``."""

    def __init__(self, num_classes: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBnAct(3, 16, 3, 2), ConvBnAct(16, 32, 3, 2))
        self.stage3 = nn.Sequential(ConvBnAct(32, 64, 3, 2), Bottleneck(64, 32))
        self.stage4 = nn.Sequential(ConvBnAct(64, 128, 3, 2), Bottleneck(128, 64))
        self.stage5 = nn.Sequential(ConvBnAct(128, 160, 3, 2), Bottleneck(160, 64))
        self.lateral5 = ConvBnAct(160, 64, 1)
        self.merge4 = nn.Sequential(ConvBnAct(64 + 128, 64, 1), ConvBnAct(64, 64, 3))
        self.merge3 = nn.Sequential(ConvBnAct(64 + 64, 48, 1), ConvBnAct(48, 48, 3))
        self.heads = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, c, 3), nn.Conv2d(c, 4 + num_classes, 1)) for c in (48, 64, 64)
        )
        anchors, strides = make_anchors(image_size)
        self.register_buffer("anchors", anchors.T.contiguous(), persistent=False)  # (2, A)
        self.register_buffer("strides", strides[None], persistent=False)  # (1, A)
        for head, stride in zip(self.heads, STRIDES):
            out: nn.Conv2d = head[-1]
            nn.init.zeros_(out.bias)
            # Prior of ~5 objects per image spread over the level's cells, as in YOLOv8: stable early BCE.
            out.bias.data[4:] = math.log(5.0 / num_classes / (image_size / stride) ** 2)

    def raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box side distances l, t, r, b in pixels (B, 4, A) and class logits (B, nc, A), for the loss."""
        c3 = self.stage3(self.stem(images))
        c4 = self.stage4(c3)
        p5 = self.lateral5(self.stage5(c4))
        p4 = self.merge4(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), c4], 1))
        p3 = self.merge3(torch.cat([F.interpolate(p4, scale_factor=2.0, mode="nearest"), c3], 1))
        out = torch.cat([head(p).flatten(2) for head, p in zip(self.heads, (p3, p4, p5))], 2)
        return F.softplus(out[:, :4]) * self.strides, out[:, 4:]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        dist, logits = self.raw(images)
        lt, rb = dist[:, :2], dist[:, 2:]
        centre = self.anchors + (rb - lt) * 0.5
        return torch.cat([centre, lt + rb, logits.sigmoid()], 1)

"""Simplified YOLOv8 loss: task-aligned assignment, BCE for classes, GIoU + L1 for directly regressed boxes.

Direct regression of the four side distances (no DFL) keeps the exported head a plain conv + softplus, which
quantises well; the L1 term on distances in stride units sharpens boxes for the 0.5:0.95 metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TOPK = 10
ALPHA = 0.5
BETA = 6.0
EPS = 1e-9
BOX_GAIN, CLS_GAIN, L1_GAIN = 7.5, 0.5, 1.0


def box_iou(a: torch.Tensor, b: torch.Tensor, generalized: bool = False) -> torch.Tensor:
    """IoU (or GIoU) of broadcastable xyxy boxes (..., 4)."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter + EPS
    iou = inter / union
    if not generalized:
        return iou
    hull = torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])
    hull_area = hull[..., 0] * hull[..., 1] + EPS
    return iou - (hull_area - union) / hull_area


@torch.no_grad()
def assign(
    scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment (YOLOv8's TAL without its extras).

    scores (B,A,C) sigmoid, pred_boxes (B,A,4) xyxy, anchors (A,2), gt_boxes (B,G,4), gt_classes (B,G) with -1 for
    padding. Each object takes the ``TOPK`` anchors inside it with the best score**ALPHA * IoU**BETA; an anchor
    claimed twice goes to the object it overlaps most. Returns target boxes (B,A,4), soft class targets (B,A,C)
    scaled by alignment (so the score learns to predict localisation quality) and the foreground mask (B,A).
    """
    num_anchors, num_classes = scores.shape[1:]
    valid = gt_classes >= 0  # (B,G)
    lt = anchors[None, None] - gt_boxes[..., None, :2]
    rb = gt_boxes[..., None, 2:] - anchors[None, None]
    inside = (torch.cat([lt, rb], -1).amin(-1) > EPS) & valid[..., None]  # (B,G,A)
    ious = box_iou(gt_boxes[:, :, None], pred_boxes[:, None]).clamp(min=0) * inside
    cls = gt_classes.clamp(min=0)[..., None].expand(-1, -1, num_anchors)
    cls_scores = scores.transpose(1, 2).gather(1, cls)  # (B,G,A)
    align = cls_scores.pow(ALPHA) * ious.pow(BETA) * inside
    top = torch.zeros_like(inside).scatter_(-1, align.topk(TOPK, dim=-1).indices, True)
    pos = top & inside
    multi = pos.sum(1, keepdim=True) > 1  # (B,1,A)
    best = F.one_hot(ious.argmax(1), gt_classes.shape[1]).transpose(1, 2).bool()
    pos = torch.where(multi, best & inside, pos)
    fg = pos.any(1)  # (B,A)
    gt_index = pos.to(torch.uint8).argmax(1)  # (B,A)
    target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
    target_classes = gt_classes.gather(1, gt_index).clamp(min=0)
    align = align * pos
    norm = align * (ious * pos).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + EPS)
    quality = norm.amax(1) * fg  # (B,A)
    target_scores = F.one_hot(target_classes, num_classes).to(scores.dtype) * quality[..., None]
    return target_boxes, target_scores, fg


def detection_loss(
    dist: torch.Tensor,
    logits: torch.Tensor,
    anchors: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss for raw outputs dist (B,4,A) ltrb pixels and logits (B,C,A); anchors (A,2), strides (A,)."""
    dist = dist.float().transpose(1, 2)  # (B,A,4)
    logits = logits.float().transpose(1, 2)  # (B,A,C)
    pred_boxes = torch.cat([anchors - dist[..., :2], anchors + dist[..., 2:]], -1)
    target_boxes, target_scores, fg = assign(logits.sigmoid(), pred_boxes.detach(), anchors, gt_boxes, gt_classes)
    total = target_scores.sum().clamp(min=1.0)
    loss_cls = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / total
    weight = target_scores.sum(-1)[fg]
    giou = box_iou(pred_boxes[fg], target_boxes[fg], generalized=True)
    loss_box = ((1.0 - giou) * weight).sum() / total
    anchor_fg = anchors.expand(fg.shape[0], -1, -1)[fg]
    target_dist = torch.cat([anchor_fg - target_boxes[fg][:, :2], target_boxes[fg][:, 2:] - anchor_fg], -1)
    stride_fg = strides.expand(fg.shape[0], -1)[fg][:, None]
    loss_l1 = (((dist[fg] - target_dist).abs() / stride_fg).sum(-1) * weight).sum() / total
    loss = BOX_GAIN * loss_box + CLS_GAIN * loss_cls + L1_GAIN * loss_l1
    return loss, {"box": loss_box.detach(), "cls": loss_cls.detach(), "l1": loss_l1.detach()}

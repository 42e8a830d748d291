"""Train the shapes detector on synthetic scenes and export it as a YOLOv8-layout ONNX.

Reproduce (from the repo root; see module/models/MODEL_CARD.md for the recorded run):
    python -m module.training.train --device cuda     # the recorded recipe, ~5 min on an H100
    python -m module.training.train --quick           # the CPU recipe, ~20 min on 2 cores, mAP@0.5 0.92
Everything is seeded (scenes, init, batch order, augmentation); CUDA kernels may still differ in the last bits
between runs, so a rerun lands within noise of the recorded mAP rather than on the same bytes.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from module.synthetic import CLASSES, TRAIN_SEED0
from module.training.data import augment, render_dataset
from module.training.evaluate import evaluate
from module.training.loss import detection_loss
from module.training.model import IMAGE_SIZE, STRIDES, ShapesDet

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
#: the recorded recipe (GPU: ~5 min on an H100) and the CPU one (--quick: ~20 min on 2 cores, lower mAP)
FULL = {"train_images": 40_000, "epochs": 36, "batch": 128}
QUICK = {"train_images": 8_000, "epochs": 7, "batch": 64}


class Ema:
    """Exponential moving average of weights and buffers; the averaged model is what gets exported."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9995, ramp: float = 1000.0) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay, self.ramp, self.updates = decay, ramp, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / self.ramp))  # short memory while weights move fast
        for ema_v, v in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema_v.dtype.is_floating_point:
                ema_v.lerp_(v, 1.0 - d)
            else:
                ema_v.copy_(v)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up (AdamW moments are noisy at first), then cosine decay to 1 % of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.01 + 0.495 * (1.0 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Export like an Ultralytics YOLOv8 detect model: input ``images``, output ``output0``, dynamic batch."""
    model = copy.deepcopy(model).cpu().float().eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
        str(path),
        input_names=["images"],
        output_names=["output0"],
        opset_version=13,  # JetPack 4: ONNX Runtime 1.10 reads up to 15, TensorRT 8.2 up to 13
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        dynamo=False,
    )
    proto = onnx.load(str(path))
    meta = {
        "task": "detect",
        "imgsz": f"[{IMAGE_SIZE}, {IMAGE_SIZE}]",
        "stride": str(max(STRIDES)),
        "names": str(dict(enumerate(CLASSES))),
        "description": "jetson-hil synthetic shapes detector (YOLOv8 output layout)",
    }
    # The legacy exporter leaves the concatenated channel axis symbolic; runtimes that size buffers want it fixed.
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_value = 4 + len(CLASSES)
    dims[2].dim_value = sum((IMAGE_SIZE // s) ** 2 for s in STRIDES)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device)
    start = time.perf_counter()
    images_np, boxes_np, classes_np = render_dataset(TRAIN_SEED0, args.train_images, args.workers)
    print(f"rendered {len(images_np)} scenes in {time.perf_counter() - start:.1f}s", flush=True)
    images = torch.from_numpy(images_np).to(device)  # uint8 NHWC, converted per batch
    gt_boxes = torch.from_numpy(boxes_np).to(device)
    gt_classes = torch.from_numpy(classes_np).to(device)

    model = ShapesDet(len(CLASSES)).to(device).to(memory_format=torch.channels_last)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    ema = Ema(model)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.99),
    )
    steps_per_epoch = len(images) // args.batch
    total_steps = steps_per_epoch * args.epochs
    warmup = min(500, total_steps // 10)
    anchors = model.anchors.T.contiguous()
    strides = model.strides[0]
    generator = torch.Generator().manual_seed(args.seed)
    use_bf16 = device.type == "cuda"
    step = 0
    train_start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator).to(device)
        epoch_start = time.perf_counter()
        for i in range(steps_per_epoch):
            lr_scale = lr_factor(step, warmup, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = args.lr * lr_scale
            idx = order[i * args.batch : (i + 1) * args.batch]
            batch = images[idx].permute(0, 3, 1, 2).float().div_(255.0)
            batch, boxes = augment(batch, gt_boxes[idx], generator)
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                dist, logits = model.raw(batch)
            loss, parts = detection_loss(dist, logits, anchors, strides, boxes, gt_classes[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            ema.update(model)
            step += 1
            if i % 50 == 0 or i == steps_per_epoch - 1:
                last = {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
        print(
            f"epoch {epoch + 1}/{args.epochs} "
            + " ".join(f"{k} {v:.4f}" for k, v in last.items())
            + f" lr {args.lr * lr_scale:.2e} {time.perf_counter() - epoch_start:.1f}s",
            flush=True,
        )
    train_s = time.perf_counter() - train_start
    print(f"trained {args.epochs} epochs ({total_steps} steps) in {train_s:.0f}s on {device}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "shapes-det.onnx"
    export_onnx(ema.model, onnx_path)
    (out / "shapes-det.labels.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB)", flush=True)
    if args.eval_images:
        evaluate(onnx_path, args.eval_images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    quick = ", ".join("--{} {}".format(k.replace("_", "-"), v) for k, v in QUICK.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"the CPU recipe: {quick} (about 20 min on 2 cores, mAP@0.5 0.92)"
    )
    parser.add_argument("--train-images", type=int, help=f"scenes from TRAIN_SEED0 (default {FULL['train_images']})")
    parser.add_argument("--epochs", type=int, help=f"default {FULL['epochs']}")
    parser.add_argument("--batch", type=int, help=f"default {FULL['batch']}")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="init, batch order and augmentation")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="scene-rendering processes")
    parser.add_argument("--eval-images", type=int, default=500, help="validation scenes after export; 0 skips")
    parser.add_argument("--out", default=str(MODELS_DIR), help="where the ONNX and labels go")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():  # flags given explicitly win over the recipe
        if getattr(args, key) is None:
            setattr(args, key, value)
    train(args)


if __name__ == "__main__":
    main()

"""Small ONNX graphs built with onnx.helper: a user's 80-class YOLOv8-layout export and broken models.

Weights are random (seeded): these test layout handling and plumbing, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

COCO80 = [f"coco{i}" for i in range(80)]


def _conv(name: str, inp: str, channels_out: int, stride: int, rng: np.random.Generator) -> tuple[list, list]:
    weight = numpy_helper.from_array(
        (rng.standard_normal((channels_out, 3, stride, stride)) * 0.01).astype(np.float32), name + "_w"
    )
    return [helper.make_node("Conv", [inp, weight.name], [name], strides=[stride, stride])], [weight]


def yolov8_like(path: Path, classes: int = 80, size: int = 640, names: list[str] | None = None) -> Path:
    """[N,3,size,size] → [N, 4+classes, anchors] over strides 8/16/32, like an Ultralytics export."""
    rng = np.random.default_rng(0)
    nodes, inits, parts = [], [], []
    shape = numpy_helper.from_array(np.array([0, 4 + classes, -1], dtype=np.int64), "flat_shape")
    inits.append(shape)
    for stride in (8, 16, 32):
        n, w = _conv(f"p{stride}", "images", 4 + classes, stride, rng)
        nodes += n
        inits += w
        nodes.append(helper.make_node("Reshape", [f"p{stride}", "flat_shape"], [f"f{stride}"]))
        parts.append(f"f{stride}")
    nodes.append(helper.make_node("Concat", parts, ["raw"], axis=2))
    # Shift logits down so random weights give few candidates (like a trained model on an empty scene).
    inits.append(numpy_helper.from_array(np.array(-4.0, dtype=np.float32), "shift"))
    nodes.append(helper.make_node("Add", ["raw", "shift"], ["shifted"]))
    nodes.append(helper.make_node("Sigmoid", ["shifted"], ["output0"]))
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    graph = helper.make_graph(
        nodes,
        "yolov8-like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + classes, anchors])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        meta = model.metadata_props.add()
        meta.key, meta.value = "names", repr(dict(enumerate(names)))
    onnx.save(model, path)
    return path


def flat_output(path: Path) -> Path:
    """A classifier-like model whose [N, 10] output no detector layout fits."""
    weight = numpy_helper.from_array(np.ones((10, 3, 64, 64), dtype=np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, 10], dtype=np.int64), "s")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"], strides=[64, 64]),
            helper.make_node("Reshape", ["c", "s"], ["logits"]),
        ],
        "flat",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weight, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path

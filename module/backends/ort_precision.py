"""FP16 and INT8 for ONNX Runtime: the model converted by ONNX Runtime's own tools, cached on disk.

TensorRT builds reduced-precision engines itself; a board or host without it still runs FP16 and
INT8 through these, so the FP16/INT8 tolerances and mAP budgets are exercised everywhere:

- fp16: ``onnxruntime.transformers.float16`` stores weights and activations as float16 (the model's
  input and output stay float32). Where the execution provider has no float16 kernel for an op
  (most CPUs), ONNX Runtime computes that op in float32 between casts: the figures are float16's
  numerics, not float16's speed.
- int8: ``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8 weights, uint8
  activations calibrated (MinMax) on the same images as TensorRT's INT8 (``module.calibration``),
  run with ONNX Runtime's integer kernels. Convolutions are quantized; the prediction convolutions
  (the last ones before the output, which emit box coordinates in pixels next to class scores) and
  the decode arithmetic after them stay FP32: one 8-bit scale cannot hold 0..320 pixels and 0..1
  scores at once (quantizing them scored 0 of 126 golden boxes; keeping them FP32, 126 of 126).

A converted model is keyed by the model's hash, ONNX Runtime's version, the precision and the
calibration set's digest, like a TensorRT engine.
"""

import contextlib
import logging
import os
from pathlib import Path
from typing import Optional

from ..calibration import CalibrationSet
from ..errors import BackendUnavailable, ModuleError
from ..model import ModelInfo
from .engine_cache import slug

log = logging.getLogger(__name__)

#: what produced each precision, as results report it
QUANTIZERS = {"fp32": None, "fp16": "ort-float16", "int8": "ort-static-qdq"}


def converted_path(cache_dir: Path, model: ModelInfo, ort_version: str, precision: str, calibration: str) -> Path:
    key = f"{model.sha256[:16]}-ort{slug(ort_version)}-{precision}"
    return cache_dir / (f"{key}-cal{slug(calibration)}.onnx" if calibration else f"{key}.onnx")


def prediction_convs(model: object) -> list:
    """Names of the Conv nodes the graph's outputs are computed from without passing another Conv."""
    graph = model.graph  # type: ignore[attr-defined]
    producer = {out: node for node in graph.node for out in node.output}
    found: list = []
    seen: set = set()
    pending = [o.name for o in graph.output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Conv":
            found.append(node.name)
        else:
            pending.extend(node.input)
    return found


def resize_constants(model: object) -> list:
    """Names of the Constant nodes that feed a Resize its roi, scales or sizes."""
    graph = model.graph  # type: ignore[attr-defined]
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        if node.op_type == "Resize":
            found += [producer[i].name for i in node.input[1:] if i in producer and producer[i].op_type == "Constant"]
    return found


def _fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers import float16

    model = onnx.load(str(source))
    options = {}
    if not hasattr(float16, "ALWAYS_FLOAT_INPUTS"):
        # an older converter (onnxruntime 1.10 on JetPack 4) makes the Constant nodes behind Resize's scales float16,
        # which Resize refuses; newer ones keep those inputs float32 themselves
        options["node_block_list"] = resize_constants(model)
    onnx.save(float16.convert_float_to_float16(model, keep_io_types=True, **options), str(target))


def _int8(source: Path, target: Path, calibration: CalibrationSet, input_name: str, input_hw: tuple) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:  # older onnxruntime (JetPack 4's 1.10): its quantize_static optimizes the model itself
        quant_pre_process = None

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = calibration.batches((1, 3, *input_hw))

        def get_next(self) -> Optional[dict]:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    import onnx

    prepared = target.with_suffix(".prep.onnx")
    # what an older quantize_static leaves behind: its optimized model beside ours, its calibration model in the
    # working directory (removed only when it was not there before)
    leftovers = [prepared.with_name(prepared.stem + "-opt.onnx")]
    if quant_pre_process is None and not os.path.exists("augmented_model.onnx"):
        leftovers.append(Path("augmented_model.onnx"))
    try:
        if quant_pre_process is not None:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        else:
            onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(source))), str(prepared))
        quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"],
                        nodes_to_exclude=prediction_convs(onnx.load(str(prepared), load_external_data=False)))
    finally:
        for path in (prepared, *leftovers):
            _unlink(path)


def _unlink(path: Path) -> None:
    """``path.unlink(missing_ok=True)``, which Python 3.6 lacks."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def reduced_model(
    model: ModelInfo,
    precision: str,
    *,
    ort_version: str,
    cache_dir: Path,
    input_name: str,
    input_hw: tuple,
    calibration: Optional[CalibrationSet],
) -> Path:
    """The model at ``precision`` (fp16 or int8) as an ONNX file, converted once and then read from the cache."""
    if precision == "int8" and calibration is None:
        raise ModuleError("int8 needs calibration images: pass --calib-images DIR")
    path = converted_path(cache_dir, model, ort_version, precision, calibration.digest if calibration else "")
    if path.is_file():
        return path
    try:
        import onnx  # noqa: F401  (both converters need it)
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime {precision} needs the python package 'onnx' ({exc})") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    log.info("converting %s to %s for onnxruntime (once; cached as %s)", model.path.name, precision, path.name)
    try:
        if precision == "fp16":
            _fp16(model.path, tmp)
        else:
            assert calibration is not None
            log.info("calibrating int8 on %d images of %s", calibration.count, calibration.name)
            _int8(model.path, tmp, calibration, input_name, input_hw)
        tmp.replace(path)
    finally:
        _unlink(tmp)
    return path

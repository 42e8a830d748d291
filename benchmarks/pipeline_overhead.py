"""Issue 4 benchmark: how close the module's pipeline gets to the raw engine, at batch 1 by default.

    python benchmarks/pipeline_overhead.py [--rounds N] [--duration S] [--batch B] [--device-ms 2,4]

Two engines, each measured with ``module.bench.measure`` (raw, then the full threaded pipeline, in
alternating rounds so that drift on a shared machine hits both alike):

1. ``onnxruntime``: the shipped model on this machine's CPU, as ``python -m module bench`` runs it.
   Here the pipeline's own work (letterbox, decode, NMS, bookkeeping) competes with the engine
   for the same cores.
2. ``device-wait``: a stand-in for a GPU engine where none is at hand. ``infer`` waits for a
   fixed time without holding the GIL or a core (as a CUDA stream sync does) and returns a real
   output of the shipped model, so decode and NMS do their real work. It isolates what a GPU
   backend needs from the pipeline: hand the engine its next batch as soon as it is free and
   never keep it waiting for the GIL. It measures the pipeline, not a GPU.

Prints one JSON document: per engine the medians of raw and pipeline FPS, the median ratio, the
engine's busy share inside the pipeline (see ``module.bench.Round``) and every round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from module.backends import Backend, create_backend
from module.bench import measure, sample_images
from module.decode import layout_for
from module.model import load_model
from module.preprocess import letterbox


class DeviceWait(Backend):
    """Answers like ``real`` after ``latency_s`` of waiting that uses neither a core nor the GIL."""

    name = "device-wait"
    precision = "fp32"

    def __init__(self, real: Backend, images: list[np.ndarray], latency_s: float, handoffs: int = 1) -> None:
        self.latency_s, self.handoffs = latency_s, handoffs
        self.input_name, self.input_hw = real.input_name, real.input_hw
        self.max_batch, self.output_shape = real.max_batch, real.output_shape
        self.device = f"stand-in, {latency_s * 1000:g} ms per batch"
        self._output = real.infer(letterbox(images[0], real.input_hw)[0][None])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        for _ in range(self.handoffs):  # each wait gives the GIL up and must win it back, like each torch call
            time.sleep(self.latency_s / self.handoffs)
        return np.repeat(self._output, batch.shape[0], axis=0)

    def close(self) -> None:
        pass


def summarise(rounds: list) -> dict:
    return {
        "raw_fps": round(statistics.median(r.raw_fps for r in rounds), 2),
        "pipeline_fps": round(statistics.median(r.pipeline_fps for r in rounds), 2),
        "pipeline_vs_raw": round(statistics.median(r.ratio for r in rounds), 4),
        "engine_busy": round(statistics.median(r.engine_busy for r in rounds), 4),
        "rounds": [[round(r.raw_fps, 2), round(r.pipeline_fps, 2), round(r.ratio, 4)] for r in rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per raw part, per round")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device-ms", default="2,4", help="stand-in engine latencies per batch, in ms")
    parser.add_argument("--handoffs", type=int, default=6, help="GIL releases per stand-in batch (torch: ~6)")
    parser.add_argument("--skip-cpu", action="store_true", help="only the stand-in engine")
    args = parser.parse_args()
    model = load_model(None)
    images = sample_images()
    options = {"batch": args.batch, "duration_s": args.duration, "rounds": args.rounds}
    results = {}
    with create_backend("onnxruntime", model, precision="fp32", batch=args.batch, device="cpu") as real:
        layout = layout_for(model, real)[1]
        if not args.skip_cpu:
            results["onnxruntime"] = summarise(measure(real, layout, images, **options))
        for ms in (float(v) for v in args.device_ms.split(",")):
            stand_in = DeviceWait(real, images, ms / 1000.0, args.handoffs)
            name = f"device-wait {ms:g} ms, {args.handoffs} GIL handoffs"
            results[name] = summarise(measure(stand_in, layout, images, **options))
    print(json.dumps({"batch": args.batch, "duration_s": args.duration, "results": results}, indent=2))


if __name__ == "__main__":
    main()

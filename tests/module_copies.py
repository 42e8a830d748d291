"""Candidate builds of the module for the suites to judge: a copy of module/ with deliberate defects in it."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.deploy.bundle import EXCLUDED_PARTS, MODULE_DIR

#: the letterbox reports its pad one pixel off from where it placed the image: every box maps back shifted
BROKEN_LETTERBOX = ("module/preprocess.py", "pad_x=float(pad_x),", "pad_x=float(pad_x + 1),")
#: every engine call takes twice as long (it spins for its own time after it; a sleep that short oversleeps):
#: half the frames per second. Not subtler on purpose: the gate widens its band by the runs' own spread, which
#: on a shared 2-core VM reaches ±15 %, so a 20 % slower module is flagged only when the machine is quiet
SLOWER_ENGINE = ("module/backends/onnxruntime.py",
                 "        return self._session.run([self._output_name], {self.input_name: batch})[0]",
                 "        import time\n"
                 "        started = time.perf_counter()\n"
                 "        out = self._session.run([self._output_name], {self.input_name: batch})[0]\n"
                 "        until = time.perf_counter() + (time.perf_counter() - started)\n"
                 "        while time.perf_counter() < until:\n"
                 "            pass\n"
                 "        return out")


#: the outbox forgets a message as soon as it is handed to the MQTT client, before the broker's PUBACK: whatever
#: the client still holds when the module dies is lost
EARLY_ACK = ("module/uplink/sinks/mqtt.py",
             "        info = self._client.publish(self.topic, payload, qos=1)\n",
             "        info = self._client.publish(self.topic, payload, qos=1)\n"
             "        self._add_acked([seq])\n"
             "        return\n")


def module_copy(target: Path, *edits: tuple[str, str, str], model: Path | None = None) -> Path:
    """Copy the module to `target`/module, apply (file, old, new) edits, optionally swap in another model file."""
    root = target / "module"
    shutil.copytree(MODULE_DIR, root, ignore=shutil.ignore_patterns(*EXCLUDED_PARTS, "*.pyc"))
    for name, old, new in edits:
        path = target / name
        text = path.read_text()
        assert text.count(old) == 1, f"{name}: the edit's anchor {old!r} is not there exactly once"
        path.write_text(text.replace(old, new))
    if model is not None:
        shutil.copyfile(model, root / "models" / "shapes-det.onnx")
    return root


def worse_model(target: Path, noise: float = 0.1, seed: int = 0) -> Path:
    """The reference model with Gaussian noise of `noise` x each conv weight tensor's spread added: a stand-in for
    a retraining that went worse (mAP@0.5 on the fixtures 0.90 instead of 0.99, by the independent reference)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(MODULE_DIR / "models" / "shapes-det.onnx"))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        weights = numpy_helper.to_array(tensor)
        if weights.ndim == 4:
            noisy = weights + rng.normal(0.0, noise * float(weights.std()), weights.shape).astype(weights.dtype)
            tensor.CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    onnx.save(model, str(target))
    return target

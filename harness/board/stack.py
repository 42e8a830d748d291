"""The board's software stack as the module meets it: Python, glibc, CPU, TensorRT, the CUDA runtime, OpenCV.

Read by `onboard/stack_probe.py`, which the board's own python3 runs (one round trip). The deploy uses it to
pick the wheels, to keep JetPack's TensorRT and OpenCV, and to refuse a board that cannot run the module
before anything is copied; `hil probe` and the session print it as one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError
from harness.transport.base import Transport
from module.backends import libcudart

PROBE_SOURCE = Path(__file__).resolve().parent / "onboard" / "stack_probe.py"
#: the module's own libcudart finder, sent ahead of the probe: the probe finds what the module will load
FINDER_SOURCE = Path(libcudart.__file__)
PROBE_TIMEOUT_S = 60  # importing TensorRT's bindings takes seconds on a Nano


class CudaRuntime(BaseModel):
    model_config = ConfigDict(frozen=True)

    soname: str
    path: str | None = None
    version: str | None = None


class BoardStack(BaseModel):
    """What `stack_probe.py` found; a None version means absent, a `*_error` that it is there but broken."""

    model_config = ConfigDict(frozen=True)

    python: str
    machine: str
    glibc: str | None = None
    tensorrt: str | None = None
    tensorrt_error: str | None = None
    cudart: CudaRuntime | None = None
    opencv: str | None = None
    venv: bool = True
    trtexec: bool = False

    @property
    def python_version(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    def parts(self) -> list[str]:
        """`Python 3.8.10`, `TensorRT 8.5.2.2`, `CUDA 11.4 (libcudart.so.11.0)`: the line's pieces."""
        if self.tensorrt:
            tensorrt = f"TensorRT {self.tensorrt}"
        else:
            tensorrt = "TensorRT broken" if self.tensorrt_error else "no TensorRT"
        cuda = f"CUDA {self.cudart.version or '?'} ({self.cudart.soname})" if self.cudart else "no CUDA runtime"
        return [f"Python {self.python}", tensorrt, cuda]


def parse_stack(text: str, board: str) -> BoardStack:
    """The probe's JSON line; anything else is one error naming the board and what python3 said."""
    line = (text.strip().splitlines() or [""])[-1]
    try:
        return BoardStack.model_validate(json.loads(line))
    except (ValueError, ValidationError) as exc:
        said = line[:200] or "nothing"
        raise HarnessError(f"{board}: cannot read the board's software stack (python3 printed {said!r}): "
                           f"{str(exc).splitlines()[0]}") from None


def read_stack(transport: Transport, board: str) -> BoardStack:
    """Run the probe, after the module's libcudart finder, with the board's python3 (stdin: nothing is left on the
    board)."""
    script = FINDER_SOURCE.read_text() + "\n" + PROBE_SOURCE.read_text()
    result = transport.run("python3 -", timeout=PROBE_TIMEOUT_S, stdin=script)
    if not result.ok:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [f"exit {result.exit_code}"]
        if result.exit_code == 127:
            said = ["no python3 on the board: install python3 (JetPack ships it)"]
        raise HarnessError(f"{board}: probing the board's software stack failed: {said[0]}")
    return parse_stack(result.stdout, board)

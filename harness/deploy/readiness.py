"""Can this board run the module, and with which backend? One line, before anything is copied.

`auto` means TensorRT through JetPack's own bindings and CUDA runtime. A board without them is refused,
naming what to install: ONNX Runtime on a Jetson's CPU is a different measurement, so it runs only when a run
(`--backend onnxruntime`) or the inventory (`backend: onnxruntime`) asks for it, never as a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.board import Board
from harness.board.stack import BoardStack
from harness.errors import DeployError, HarnessError

from .wheelhouse import OLDEST_PYTHON

#: what the harness deploys the module with: `torch` (module/backends/torch.py) is for GPU hosts, and the deploy
#: installs neither torch nor onnx2torch on a board
BACKENDS = ("auto", "tensorrt", "onnxruntime")
CPU_HINT = "or run ONNX Runtime on the CPU explicitly: --backend onnxruntime (or backend: onnxruntime in lab.yaml)"


def _missing(stack: BoardStack, backend: str) -> list[str]:
    """What the board lacks for `backend`, each naming the package that brings it."""
    missing = []
    if stack.python_version < OLDEST_PYTHON:
        missing.append(f"Python {OLDEST_PYTHON[0]}.{OLDEST_PYTHON[1]}+ (the board has {stack.python})")
    if not stack.venv:
        missing.append("venv support for the module's virtualenv: sudo apt install python3-venv")
    if backend == "tensorrt":
        if stack.tensorrt_error:
            missing.append(f"working TensorRT Python bindings ({stack.tensorrt_error}): "
                           "sudo apt install --reinstall python3-libnvinfer")
        elif not stack.tensorrt:
            missing.append("TensorRT's Python bindings: sudo apt install python3-libnvinfer (in nvidia-tensorrt)")
        if stack.cudart is None:
            missing.append("the CUDA runtime (libcudart): sudo apt install nvidia-cuda (JetPack's CUDA)")
    return missing


@dataclass(frozen=True)
class Readiness:
    """The board's stack, the backend asked for, and the backend that will run (None: the board is not ready)."""

    board: str
    jetpack: str | None
    stack: BoardStack
    wanted: str
    backend: str | None
    missing: tuple[str, ...]

    def line(self) -> str:
        """`JetPack 5.1.2 · Python 3.8.10 · TensorRT 8.5.2 · CUDA 11.4 (libcudart.so.11.0) → tensorrt`."""
        facts = " · ".join([f"JetPack {self.jetpack or 'unknown'}", *self.stack.parts()])
        if self.backend is None:
            hint = f"; {CPU_HINT}" if self.wanted in ("auto", "tensorrt") else ""
            return f"{facts} → not ready for {self.wanted}: needs {'; '.join(self.missing)}{hint}"
        chosen = "" if self.wanted == "auto" else " (asked for)"
        return f"{facts} → {self.backend}{chosen}"

    def check(self) -> str:
        """The backend to start the module with, or DeployError with the line naming what to install."""
        if self.backend is None:
            raise DeployError(f"{self.board}: {self.line()}")
        return self.backend


def assess(board: str, jetpack: str | None, stack: BoardStack, wanted: str) -> Readiness:
    """Which backend `wanted` (one of BACKENDS) comes to on this stack, or what is missing."""
    if wanted not in BACKENDS:
        raise DeployError(f"{board}: unknown backend {wanted!r}: choose {', '.join(BACKENDS)}")
    backend = "tensorrt" if wanted == "auto" else wanted
    missing = tuple(_missing(stack, backend))
    return Readiness(board, jetpack, stack, wanted, None if missing else backend, missing)


def readiness_of(board: Board, wanted: str | None = None) -> Readiness:
    """`assess` for a connected board: `wanted`, else the board's inventory backend."""
    try:
        jetpack = board.identity().jetpack
    except HarnessError:  # a board whose release file is unreadable can still say what its Python has
        jetpack = None
    return assess(board.name, jetpack, board.stack(), wanted or board.backend)

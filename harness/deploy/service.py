"""How the long-running module is started on a board (the command line the supervisor runs)."""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field, replace

DEFAULT_API_PORT = 8470


@dataclass(frozen=True)
class ServiceSpec:
    """The module's ``run`` options; a changed spec restarts the service, an equal one keeps it."""

    source: str = "synthetic"
    sink: str | None = None  # None: a JSONL file in the board's state folder
    fps_cap: float = 15.0
    #: None: the board's (its inventory `backend:`, else auto); deployers resolve it before the module starts
    backend: str | None = None
    precision: str = "fp32"
    batch: int = 1
    api_port: int = DEFAULT_API_PORT
    extra: tuple[str, ...] = field(default_factory=tuple)

    def on(self, board_backend: str) -> ServiceSpec:
        """This spec with the board's backend where it names none (an image brings its own TensorRT, so a
        container's deploy passes the name on and the module resolves `auto` inside it)."""
        return self if self.backend else replace(self, backend=board_backend)

    def argv(self, root: str) -> list[str]:
        sink = self.sink or f"jsonl:{root}/state/detections.jsonl"
        return [
            f"{root}/venv/bin/python", "-m", "module", "run",
            "--source", self.source, "--sink", sink, "--fps-cap", str(self.fps_cap),
            "--backend", self.backend or "auto", "--precision", self.precision, "--batch", str(self.batch),
            "--api-port", str(self.api_port), "--state-dir", f"{root}/state", *self.extra,
        ]  # fmt: skip

    def command(self, root: str) -> str:
        return shlex.join(self.argv(root))

    def sha(self, root: str) -> str:
        return hashlib.sha256(self.command(root).encode()).hexdigest()[:16]

"""JSON Lines file sink: for bench runs and boards without a broker."""

import os
from typing import BinaryIO, List, Optional

from module.uplink.sinks.base import Sink, SinkError


class JsonlSink(Sink):
    """Appends one JSON object per line; a batch is acknowledged once it is fsynced."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._file: Optional[BinaryIO] = None
        self._pending: List[int] = []

    def connect(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 (held open for the sink's life, closed in close())

    @property
    def connected(self) -> bool:
        return self._file is not None

    def capacity(self) -> int:
        return 1000 if self._file is not None else 0

    def send(self, seq: int, payload: bytes) -> None:
        if self._file is None:
            raise SinkError(f"{self.path}: not open")
        try:
            self._file.write(payload + b"\n")
        except OSError as exc:
            self.last_error = f"{self.path}: {exc}"
            raise SinkError(self.last_error) from exc
        self._pending.append(seq)

    def flush(self) -> None:
        if self._file is None or not self._pending:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self._pending = []  # not acknowledged: the publisher resends the whole batch
            self.last_error = f"{self.path}: {exc}"
            raise SinkError(self.last_error) from exc
        pending, self._pending = self._pending, []
        self._add_acked(pending)

    def close(self, timeout: float = 5.0) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

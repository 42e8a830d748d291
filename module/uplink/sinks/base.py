"""The contract between the publisher and a transport."""

import abc
import logging
import threading
from typing import Any, List, Optional

log = logging.getLogger("module.uplink")


class SinkError(Exception):
    """A send was not accepted; the message stays in the outbox and the publisher retries it later."""


class Sink(abc.ABC):
    """A transport the publisher drains the outbox into.

    Contract, which is what lets the publisher keep delivery in seq order:

    * ``connect()`` starts the link and returns promptly; an unreachable peer is not an error (degraded mode:
      ``connected`` stays False and the sink keeps retrying on its own).
    * ``send()`` either raises :class:`SinkError` (not accepted) or takes responsibility for the message until it
      shows up in ``poll_acked()``; across reconnects the sink resends it itself, before anything sent later.
    * ``capacity()`` is how many more sends it accepts now (0 while disconnected or its in-flight window is full).
    * ``flush()`` ends a batch (e.g. fsync for a file); if it raises, that batch counts as not accepted.
    * ``wakeup`` is set by the publisher; a sink calls it when acks arrive or the link comes up.
    """

    def __init__(self) -> None:
        self.last_error: Optional[str] = None
        self.wakeup = _noop
        self._acked: List[int] = []
        self._acked_lock = threading.Lock()

    @abc.abstractmethod
    def connect(self) -> None: ...

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    def capacity(self) -> int: ...

    @abc.abstractmethod
    def send(self, seq: int, payload: bytes) -> None: ...

    def flush(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """End of a batch; SinkError means the sends since the last flush were not accepted."""

    def twin_client(self) -> Optional[Any]:
        """The module client whose twin this transport also carries (IoT Edge), else None."""
        return None

    def poll_acked(self) -> List[int]:
        """Seqs acknowledged since the last call."""
        with self._acked_lock:
            acked, self._acked = self._acked, []
        return acked

    @abc.abstractmethod
    def close(self, timeout: float = 5.0) -> None: ...

    def _add_acked(self, seqs: List[int]) -> None:
        with self._acked_lock:
            self._acked.extend(seqs)
        self.wakeup()


def _noop() -> None:
    pass

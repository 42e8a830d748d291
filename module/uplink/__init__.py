"""Lossless uplink: a disk-backed outbox drained by a publisher thread into MQTT, IoT Edge or a file.

The pipeline calls ``Outbox.put(message)`` once per frame; a ``Publisher`` thread sends in seq order and deletes
what the sink acknowledged. A lost link, a SIGKILL or a reboot loses nothing; a full outbox drops its oldest.
"""

from module.uplink.outbox import Outbox, OutboxLockedError
from module.uplink.publisher import Publisher
from module.uplink.sinks import Sink, SinkError, open_sink

__all__ = ["Outbox", "OutboxLockedError", "Publisher", "Sink", "SinkError", "open_sink"]

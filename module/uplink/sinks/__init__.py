"""Uplink transports, chosen by URL. Each transport's client library is imported only when it is used."""

from typing import Any

from module.errors import UplinkUnavailable
from module.uplink.sinks.base import Sink, SinkError

SCHEMES = ("jsonl:PATH", "file:PATH", "mqtt://host[:port]/topic", "iotedge:OUTPUT")


def open_sink(url: str, **options: Any) -> Sink:
    """Build the sink for ``url``; ``options`` go to its constructor (e.g. ``retry_max_s`` for MQTT)."""
    scheme, sep, rest = url.partition(":")
    if sep and scheme in ("jsonl", "file") and rest:
        from module.uplink.sinks.jsonl import JsonlSink

        return JsonlSink(rest[2:] if rest.startswith("//") else rest, **options)
    if sep and scheme == "mqtt":
        try:
            from module.uplink.sinks.mqtt import MqttSink
        except ImportError as exc:  # paho-mqtt absent (2.x and 1.6 both work)
            raise UplinkUnavailable(
                f"uplink mqtt needs paho-mqtt ({exc}): pip install paho-mqtt (1.6.1 on Python 3.6, else 2.x)"
            ) from None

        return MqttSink(url, **options)
    if sep and scheme == "iotedge":
        from module.uplink.sinks.iotedge import IotEdgeSink

        return IotEdgeSink(rest or "output1", **options)
    raise ValueError(f"unsupported uplink sink {url!r}; supported: {', '.join(SCHEMES)}")


__all__ = ["SCHEMES", "Sink", "SinkError", "open_sink"]

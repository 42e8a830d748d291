"""Azure IoT Edge sink: module output messages routed by edgeHub.

Kept at the SDK boundary: ``send_message_to_output`` blocks until edgeHub acknowledged the message, so a return
without an exception is the acknowledgement. It runs on the publisher thread, one message at a time.
"""

import logging
import os
from typing import Any

from module.errors import UplinkUnavailable
from module.uplink.sinks.base import Sink, SinkError, log

# What IoTHubModuleClient.create_from_edge_environment() reads inside an IoT Edge module container.
EDGE_ENV = (
    "IOTEDGE_IOTHUBHOSTNAME",
    "IOTEDGE_DEVICEID",
    "IOTEDGE_MODULEID",
    "IOTEDGE_GATEWAYHOSTNAME",
    "IOTEDGE_MODULEGENERATIONID",
    "IOTEDGE_WORKLOADURI",
    "IOTEDGE_APIVERSION",
)
# The SDK's local-debugging fallback (set by the VS Code / Visual Studio IoT Edge tooling).
EDGE_DEV_ENV = ("EdgeHubConnectionString", "EdgeModuleCACertificateFile")


class IotEdgeSink(Sink):
    """Sends each message to the module output ``output_name`` as UTF-8 JSON."""

    def __init__(self, output_name: str = "output1") -> None:
        super().__init__()
        if not output_name:
            raise ValueError("IoT Edge sink needs an output name, e.g. iotedge:output1")
        try:
            from azure.iot.device import IoTHubModuleClient, Message
        except ImportError as exc:
            raise UplinkUnavailable(
                "uplink iotedge: the azure-iot-device package is not installed (pip install azure-iot-device)"
            ) from exc
        missing = [name for name in EDGE_ENV if not os.environ.get(name)]
        if missing and not all(os.environ.get(name) for name in EDGE_DEV_ENV):
            # Names only: the values identify the device and must not end up in logs.
            raise UplinkUnavailable(
                "uplink iotedge: not running inside an IoT Edge module, missing environment variables "
                + ", ".join(missing)
            )
        # The SDK narrates every connect and send at INFO; our own lines say what a lab needs to know.
        logging.getLogger("azure.iot.device").setLevel(logging.WARNING)
        self.output_name = output_name
        self._message_cls = Message
        self._client: Any = IoTHubModuleClient.create_from_edge_environment()

    def connect(self) -> None:
        try:
            self._client.connect()
            log.info("uplink: connected to edgeHub, sending to output %s", self.output_name)
        except Exception as exc:  # the SDK raises its own hierarchy; any failure here means "degraded, retry"
            self.last_error = f"edgeHub unreachable ({type(exc).__name__})"
            log.warning("uplink: %s; queueing to outbox, the SDK retries on the next send", self.last_error)

    def twin_client(self) -> Any:
        return self._client

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def capacity(self) -> int:
        return 1  # send() is synchronous; one at a time keeps the batch's order

    def send(self, seq: int, payload: bytes) -> None:
        message = self._message_cls(payload, content_encoding="utf-8", content_type="application/json")
        message.custom_properties["seq"] = str(seq)
        try:
            self._client.send_message_to_output(message, self.output_name)
        except Exception as exc:
            self.last_error = f"edgeHub send failed ({type(exc).__name__})"
            raise SinkError(self.last_error) from exc
        self._add_acked([seq])

    def close(self, timeout: float = 5.0) -> None:
        self._client.shutdown()

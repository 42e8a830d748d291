"""The IoT Edge sink at the wire: azure-iot-device's real module client against a stand-in edgeHub.

edgeHub itself is Azure's and cannot run here; what the module client speaks to it is MQTT 3.1.1 over
TLS on port 8883, which a real mosquitto with a test CA serves. The module runs as ``python -m module
run`` with the SDK's local-debug environment (``EdgeHubConnectionString`` with a ``GatewayHostName``
and ``EdgeModuleCACertificateFile``), exactly as IoT Edge's developer tooling starts a module.

azure-iot-device pins paho-mqtt < 2 (the module's MQTT sink takes 1.6 or 2.x), so the SDK lives in its
own folder (``scripts/setup.sh`` installs it into ``.venv/iotedge-sdk``) and only the module
process under test sees it, first on its ``PYTHONPATH``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.ci import unavailable
from tests.module.test_module_uplink import Module
from tests.module.test_uplink_mqtt import (
    MOSQUITTO,
    REPO,
    Mosquitto,
    Subscriber,
    assert_delivered_in_order,
    subscriber_factory,
    wait_until,
)

pytestmark = pytest.mark.mqtt
__all__ = ["subscriber_factory"]  # fixture used by name below

SDK = Path(os.environ.get("JETSON_HIL_IOTEDGE_SDK", REPO / ".venv" / "iotedge-sdk"))
EDGE_PORT = 8883  # the SDK's MQTT port; it cannot be changed
DEVICE, MODULE_ID, OUTPUT = "lab-board-1", "detector", "output1"
EVENTS = f"devices/{DEVICE}/modules/{MODULE_ID}/messages/events/#"
#: a made-up key: what must never show up in the module's log
SHARED_ACCESS_KEY = base64.b64encode(b"jetson-hil test key, not a secret").decode()


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for localhost signed by it: (ca, cert, key)."""
    ca, ca_key, cert, key, csr, ext = (folder / n for n in ("ca.pem", "ca.key", "server.pem", "server.key",
                                                             "server.csr", "server.ext"))  # fmt: skip
    ext.write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    commands = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=jetson-hil test edge CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", ext],
    ]  # fmt: skip
    for args in commands:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)
    return ca, cert, key


@pytest.fixture
def edge_hub(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """mosquitto with edgeHub's TLS listener on 8883 (plus a plain one for the test's subscriber), and its CA."""
    if not os.access(MOSQUITTO, os.X_OK) or not shutil.which("openssl"):
        unavailable("needs mosquitto and openssl (scripts/setup.sh installs both)")
    if not (SDK / "azure" / "iot" / "device").is_dir():
        unavailable(f"azure-iot-device is not installed in {SDK} (scripts/setup.sh installs it)")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", EDGE_PORT)) == 0:
            pytest.fail(f"something already listens on 127.0.0.1:{EDGE_PORT}, the port the IoT Edge SDK must use")
    workdir = tmp_path / "edgehub"
    workdir.mkdir()
    ca, cert, key = make_certificates(workdir)
    tls = (f"listener {EDGE_PORT} 127.0.0.1", f"cafile {ca}", f"certfile {cert}", f"keyfile {key}")
    broker = Mosquitto(workdir, extra_config=tls)
    yield broker, ca
    broker.stop()


def module_env(ca: Path) -> dict[str, str]:
    connection = (f"HostName=lab-hub.azure-devices.net;GatewayHostName=localhost;DeviceId={DEVICE};"
                  f"ModuleId={MODULE_ID};SharedAccessKey={SHARED_ACCESS_KEY}")  # fmt: skip
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(SDK), str(REPO)]),
        EdgeHubConnectionString=connection,
        EdgeModuleCACertificateFile=str(ca),
    )


def test_iotedge_output_reaches_edgehub_in_order_across_an_outage(
    tmp_path: Path, edge_hub: tuple[Mosquitto, Path], subscriber_factory: Callable[..., Subscriber]
) -> None:
    broker, ca = edge_hub
    broker.start()
    sub = subscriber_factory(broker, EVENTS)
    module = Module(tmp_path, f"iotedge:{OUTPUT}", "edge-run", tmp_path / "state", env=module_env(ca))
    try:
        wait_until(lambda: len(sub.seqs()) >= 25, 60, "the first module outputs at edgeHub")
        broker.stop()
        wait_until(lambda: module.uplink("depth", 0) >= 100, 30, "the module queueing while edgeHub is down (4 s)")
        broker.start()
        total = module.drain("edgeHub", reconnect_s=60)
        assert isinstance(total, int) and total > 125
    finally:
        code = module.stop()
    assert code == 0
    assert_delivered_in_order(sub, list(range(1, total + 1)))
    for message, topic in zip(sub.messages, sub.topics, strict=True):
        # edgeHub routes on the output name; the SDK carries message properties in the topic
        properties = dict(item.split("=", 1) for item in unquote(topic.rsplit("/", 1)[1]).split("&"))
        assert properties["$.on"] == OUTPUT
        assert properties["seq"] == str(message["seq"])
        assert properties["$.ct"] == "application/json"
    log = module.log_path.read_text()
    assert "uplink: connected to edgeHub" in log
    assert SHARED_ACCESS_KEY not in log and "SharedAccessSignature" not in log and "sig=" not in log
    sdk_lines = [line for line in log.splitlines() if " azure.iot.device." in line]
    assert all(" WARNING " in line or " ERROR " in line for line in sdk_lines), sdk_lines  # no INFO chatter


class TwinStandIn:
    """edgeHub's side of the module twin over MQTT, as IoT Hub's MQTT API documents it: answers the module's
    `$iothub/twin/GET` with the twin, acknowledges its reported patches (keeping them), and pushes desired ones."""

    def __init__(self, broker: Mosquitto, desired: dict) -> None:
        import paho.mqtt.client as mqtt

        self.desired, self.reported = {**desired, "$version": 1}, []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edgehub-twin")
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe([("$iothub/twin/GET/#", 1), ("$iothub/twin/PATCH/properties/reported/#", 1)])
        self.client.loop_start()

    def _message(self, client, userdata, message) -> None:
        rid = message.topic.split("$rid=")[1].split("&")[0]
        if message.topic.startswith("$iothub/twin/GET/"):
            body = json.dumps({"desired": self.desired, "reported": {"$version": 1}})
            client.publish(f"$iothub/twin/res/200/?$rid={rid}", body, qos=1)
        else:
            self.reported.append(json.loads(message.payload))
            client.publish(f"$iothub/twin/res/204/?$rid={rid}&$version={len(self.reported) + 1}", b"", qos=1)

    def push(self, patch: dict) -> None:
        self.desired = {**self.desired, **patch, "$version": self.desired["$version"] + 1}
        self.client.publish(f"$iothub/twin/PATCH/properties/desired/?$version={self.desired['$version']}",
                            json.dumps({**patch, "$version": self.desired["$version"]}), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_the_module_twin_reports_what_runs_and_sets_the_thresholds(
    tmp_path: Path, edge_hub: tuple[Mosquitto, Path]
) -> None:
    broker, ca = edge_hub
    broker.start()
    twin = TwinStandIn(broker, {"thresholds": {"conf": 0.4, "iou": 0.5}, "backend": "auto", "precision": "fp16"})
    module = Module(tmp_path, f"iotedge:{OUTPUT}", "twin-run", tmp_path / "state", env=module_env(ca))
    try:
        wait_until(lambda: twin.reported, 60, "the module's first reported properties")
        first = twin.reported[0]
        info = module.get("/info")
        assert (first["model_sha256"], first["backend"], first["precision"]) == (
            info["model_sha256"], info["backend"], info["precision"])
        assert first["thresholds"] == {"conf": 0.4, "iou": 0.5}  # the desired ones, now in force
        assert module.get("/config")["conf_threshold"] == 0.4
        assert "precision 'fp16' needs a restart of the module; it runs 'fp32'" in first["config_problems"]
        twin.push({"thresholds": {"conf": 0.6}})
        wait_until(lambda: len(twin.reported) >= 2, 30, "the report after a desired patch")
        assert twin.reported[-1]["thresholds"] == {"conf": 0.6, "iou": 0.5}
        assert module.get("/config")["conf_threshold"] == 0.6
        twin.push({"thresholds": {"conf": 7}})
        wait_until(lambda: len(twin.reported) >= 3, 30, "the report after a bad desired patch")
        assert twin.reported[-1]["thresholds"]["conf"] == 0.6  # refused, and said so
        assert "must be within 0..1" in twin.reported[-1]["config_problems"]
    finally:
        twin.close()
        assert module.stop() == 0

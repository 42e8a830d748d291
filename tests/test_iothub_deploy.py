"""Applying a deployment through IoT Hub and waiting for edgeAgent, with the real azure-iot-hub SDK over HTTPS
against the virtual lab's hub (harness/virtual/hub.py), and an edgeAgent stand-in on the device side that answers
as a healthy, a rejecting, a crash-looping or a silent device would."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.board import Board
from harness.deploy.iothub import IotHubDeployer, without_module
from harness.errors import DeployError
from harness.inventory import IotHubConfig
from harness.iothub.hub import AGENT, EdgeDevice
from harness.iothub.manifest import MODULE_ID, ModuleConfig, build_manifest, module_create_options
from harness.profiles import get_profile
from harness.transport.local import LocalTransport
from harness.virtual.hub import API_VERSION, LocalHub, sas_token

DEVICE = "jetson-01"
MODEL_SHA = "5e1f0c0ffee"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    with LocalHub(tmp_path) as local:
        local.register(DEVICE)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(local.ca_file))  # trust the local hub's certificate
        yield local


class EdgeAgentStandIn:
    """The device side: reads $edgeAgent's desired version with the device's own SAS token and reports as
    `behaviour` says (ok, reject, backoff, silent)."""

    def __init__(self, hub: LocalHub, behaviour: str) -> None:
        self.hub, self.behaviour = hub, behaviour
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _request(self, method: str, path: str, body: object = None) -> dict:
        url = f"https://{self.hub.host}{path}?api-version={API_VERSION}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": sas_token(self.hub.device_key(DEVICE), f"{self.hub.host}/devices/{DEVICE}"),
            "Content-Type": "application/json"})
        import ssl

        context = ssl.create_default_context(cafile=str(self.hub.ca_file))
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            text = answer.read()
        return json.loads(text) if text else {}

    def _run(self) -> None:
        handled = 0
        while not self.stop.wait(0.1):
            desired = self._request("GET", f"/twins/{DEVICE}/modules/{AGENT}")["properties"]["desired"]
            version = desired["$version"]
            if version == handled or self.behaviour == "silent" or MODULE_ID not in desired.get("modules", {}):
                continue
            handled = version
            status = {"code": 400, "description": "invalid config"} if self.behaviour == "reject" else {"code": 200}
            module = {"runtimeStatus": "backoff", "exitCode": 1, "statusDescription": "module exited"} \
                if self.behaviour == "backoff" else {"runtimeStatus": "running", "exitCode": 0}
            self._request("PATCH", f"/twins/{DEVICE}/modules/{MODULE_ID}/reported", {"model_sha256": MODEL_SHA})
            self._request("PATCH", f"/twins/{DEVICE}/modules/{AGENT}/reported", {
                "lastDesiredVersion": version, "lastDesiredStatus": status, "modules": {MODULE_ID: module}})

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def content() -> dict:
    return build_manifest("registry.lab.example/jetson-hil-module:3f2a9c", ModuleConfig(),
                          create_options=module_create_options(True, 8470))["modulesContent"]


def deploy(hub: LocalHub, behaviour: str, timeout_s: float = 20) -> tuple[EdgeDevice, int]:
    agent = EdgeAgentStandIn(hub, behaviour)
    try:
        device = EdgeDevice(hub.connection_string, DEVICE)
        version, _ = device.apply(content())
        device.wait_applied(version, MODULE_ID, timeout_s, poll_s=0.2, reported={"model_sha256": MODEL_SHA})
        return device, version
    finally:
        agent.close()


def test_a_deployment_is_applied_waited_for_and_an_unchanged_one_is_not_sent_again(hub: LocalHub) -> None:
    device, version = deploy(hub, "ok")
    assert ("POST", f"/devices/{DEVICE}/applyConfigurationContent", 204) in hub.requests
    assert hub.twin(DEVICE, MODULE_ID).desired["thresholds"] == {"conf": 0.25, "iou": 0.45}
    posts = sum(1 for method, *_ in hub.requests if method == "POST")
    assert device.apply(content()) == (version, False)  # the device already has it: nothing is sent
    assert sum(1 for method, *_ in hub.requests if method == "POST") == posts
    assert device.deployed_content([MODULE_ID]) == content()


@pytest.mark.parametrize(("behaviour", "reason"), [
    ("reject", "rejected deployment version 2: 400 invalid config"),
    ("backoff", f"{MODULE_ID} on {DEVICE} is backoff (exit code 1, module exited)"),
    ("silent", "not running on jetson-01 within 2 s: edgeAgent at version none"),
])
def test_a_deployment_that_does_not_take_fails_with_edgeagents_reason(hub: LocalHub, behaviour: str,
                                                                       reason: str) -> None:
    with pytest.raises(DeployError) as info:
        deploy(hub, behaviour, timeout_s=2)
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_a_wrong_key_is_one_line_without_the_key(hub: LocalHub) -> None:
    wrong = hub.connection_string.replace(hub.key, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    with pytest.raises(DeployError) as info:
        EdgeDevice(wrong, DEVICE).apply(content())
    message = str(info.value)
    assert "HTTP 401" in message and hub.host in message
    assert "d3Jvbmcta2V5" not in message and hub.key not in message


def test_a_device_the_hub_does_not_know_is_one_line(hub: LocalHub) -> None:
    with pytest.raises(DeployError) as info:
        EdgeDevice(hub.connection_string, "jetson-99").apply(content())
    assert "for device jetson-99 failed (HTTP 404" in str(info.value) and "\n" not in str(info.value)


def test_a_trusted_certificate_can_be_named_instead_of_the_systems(hub: LocalHub,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert EdgeDevice(hub.connection_string, DEVICE, ca_file=hub.ca_file).deployed_content([MODULE_ID]) == {}


def test_without_the_sdk_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.iot.hub", None)
    with pytest.raises(DeployError, match=r"pip install 'jetson-hil\[iothub\]'"):
        EdgeDevice("HostName=h;SharedAccessKeyName=k;SharedAccessKey=a2V5", DEVICE)


def test_a_hub_whose_certificate_is_not_trusted_is_refused(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(DeployError, match="reading the \\$edgeAgent twin for device jetson-01 failed") as info:
        EdgeDevice(hub.connection_string, DEVICE).apply(content())
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert not [request for request in hub.requests if request[0] == "POST"]


def test_a_board_without_an_iothub_entry_or_with_an_unknown_runtime_is_one_line() -> None:
    board = Board("xnx-07", get_profile("xavier-nx"), LocalTransport(name="xnx-07"))
    with pytest.raises(DeployError, match=r"^xnx-07 has no iothub entry in lab.yaml .*--deploy iothub needs one$"):
        IotHubDeployer(board)
    config = IotHubConfig(device_id="xnx-07", connection_string_env="LAB_HUB", runtime="balena")
    with pytest.raises(DeployError, match=r"unknown iothub runtime 'balena' in lab.yaml; choose from docker, "
                                          r"virtual-edge"):
        IotHubDeployer(board, config=config)


def test_restoring_a_device_that_had_no_deployment_keeps_its_runtime_without_the_module() -> None:
    bare = without_module(content())
    assert bare["$edgeAgent"]["properties.desired"]["modules"] == {}
    assert bare["$edgeAgent"]["properties.desired"]["systemModules"] == \
        content()["$edgeAgent"]["properties.desired"]["systemModules"]
    assert bare["$edgeHub"]["properties.desired"]["routes"] == {} and MODULE_ID not in bare

"""One IoT Edge device as IoT Hub shows it, through the azure-iot-hub SDK: apply a deployment, and wait until
edgeAgent reports it applied and the module running (or say why not, in edgeAgent's words).

azure-iot-hub is an optional extra (`pip install 'jetson-hil[iothub]'`): it pulls uamqp, which does not build
everywhere. The hub's connection string is passed in by the caller, which reads it from the environment
variable lab.yaml names; it never appears in a message or a log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DeployError

AGENT = "$edgeAgent"
HUB = "$edgeHub"
FAILED_STATES = ("failed", "backoff", "unhealthy")


def _sdk() -> Any:
    try:
        from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
        from azure.iot.hub.models import ConfigurationContent
    except ImportError as exc:
        raise DeployError(f"deploying through IoT Hub needs the azure-iot-hub SDK ({exc.name} is missing): "
                          "pip install 'jetson-hil[iothub]'") from None
    return IoTHubConfigurationManager, IoTHubRegistryManager, ConfigurationContent


def _host(connection_string: str) -> str:
    parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    if "HostName" not in parts or "SharedAccessKey" not in parts:
        raise DeployError("the IoT Hub connection string has no HostName or SharedAccessKey: use the hub's "
                          "service connection string (iothubowner or a policy with service connect)")
    return parts["HostName"]


def _plain(desired: Mapping[str, Any]) -> dict[str, Any]:
    """Desired properties as a deployment carries them, without the twin's own $version and $metadata."""
    return {k: v for k, v in desired.items() if not k.startswith("$")}


@dataclass(frozen=True)
class Applied:
    """What edgeAgent reported once the deployment took: its version and the module's runtime state."""

    version: int
    module: dict[str, Any]


class EdgeDevice:
    """`device_id` on the hub the connection string names."""

    def __init__(self, connection_string: str, device_id: str, ca_file: Path | None = None) -> None:
        """`ca_file`: the certificate(s) to trust for the hub instead of the system's (a private endpoint)."""
        config_manager, registry_manager, self._content = _sdk()
        self.device_id = device_id
        self.hub = _host(connection_string)
        try:
            self._config = config_manager.from_connection_string(connection_string)
            self._registry = registry_manager.from_connection_string(connection_string)
        except ValueError:
            raise DeployError("the IoT Hub connection string does not parse: use the hub's service connection "
                              "string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)") from None
        if ca_file is not None:
            for client in (self._config, self._registry):
                client.protocol.config.connection.verify = str(ca_file)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """An SDK call with its failure in one line (status and the hub's message), never the credentials."""
        try:
            return call()
        except Exception as exc:  # msrest and requests errors alike; the SDK has no common base class
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # e.g. a certificate not trusted
            detail = f"HTTP {status}: {getattr(response, 'text', '')[:200]}" if status else first[-240:]
            raise DeployError(f"IoT Hub {self.hub}: {what} for device {self.device_id} failed ({detail})") from None

    def twin(self, module_id: str) -> dict[str, Any]:
        twin = self._call(f"reading the {module_id} twin",
                          lambda: self._registry.get_module_twin(self.device_id, module_id))
        return twin.as_dict() if hasattr(twin, "as_dict") else dict(twin)

    def deployed_content(self, module_ids: list[str]) -> dict[str, Any]:
        """The deployment the device has now (each module's desired properties), to compare or restore."""
        content = {}
        for module_id in (AGENT, HUB, *module_ids):
            desired = self.twin(module_id).get("properties", {}).get("desired", {})
            if _plain(desired):
                content[module_id] = {"properties.desired": _plain(desired)}
        return content

    def apply(self, modules_content: Mapping[str, Any]) -> tuple[int, bool]:
        """Apply the deployment unless the device already has it: (the $edgeAgent desired version to wait for,
        whether it was sent)."""
        module_ids = [m for m in modules_content if not m.startswith("$")]
        sent = self.deployed_content(module_ids) != dict(modules_content)
        if sent:
            content = self._content(modules_content=dict(modules_content))
            self._call("applying the deployment",
                       lambda: self._config.apply_configuration_on_edge_device(self.device_id, content))
        return int(self.twin(AGENT)["properties"]["desired"]["$version"]), sent

    def wait_applied(self, version: int, module_id: str, timeout_s: float, poll_s: float = 1.0,
                     reported: Mapping[str, Any] | None = None, say: Callable[[str], None] = lambda _: None,
                     ) -> Applied:
        """Until edgeAgent reports desired `version` applied (200) and `module_id` running, and the module's own
        reported properties include `reported`; a rejected deployment or a failing module raises with the reason,
        as does the deadline, with the last thing edgeAgent said."""
        deadline = time.monotonic() + timeout_s
        last = "edgeAgent reported nothing yet"
        while True:
            agent = self.twin(AGENT).get("properties", {}).get("reported", {})
            seen = int(agent.get("lastDesiredVersion") or 0)
            status = agent.get("lastDesiredStatus") or {}
            module = (agent.get("modules") or {}).get(module_id, {})
            if seen >= version:
                if status.get("code") not in (None, 200):
                    raise DeployError(f"edgeAgent on {self.device_id} rejected deployment version {version}: "
                                      f"{status.get('code')} {status.get('description', '')}".rstrip())
                state = module.get("runtimeStatus")
                if state in FAILED_STATES:
                    raise DeployError(f"{module_id} on {self.device_id} is {state} (exit code {module.get('exitCode')}"
                                      f", {module.get('statusDescription') or 'no description'})")
                if state == "running" and status.get("code") == 200:
                    own = self.twin(module_id).get("properties", {}).get("reported", {})
                    if all(own.get(k) == v for k, v in (reported or {}).items()):
                        return Applied(seen, module)
                    last = f"{module_id} running; its reported properties do not show {dict(reported or {})} yet"
                else:
                    last = f"version {seen} applied, {module_id} {state or 'not listed'}"
            else:
                last = f"edgeAgent at version {seen or 'none'}, {status.get('code', 'no status')}"
            if time.monotonic() > deadline:
                raise DeployError(f"deployment version {version} not running on {self.device_id} within "
                                  f"{timeout_s:.0f} s: {last}")
            say(last)
            time.sleep(poll_s)

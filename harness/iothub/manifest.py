"""The IoT Edge deployment manifest that runs the module on a board: edgeAgent's runtime and modules, edgeHub's
routes and store-and-forward, and the module twin's desired properties (its configuration).

Built from the module image (the Docker deployer builds and pushes it), validated against the deployment schema
2.0 (SchemaStore's azure-iot-edge-deployment-2.0, shipped beside this file) before anything is sent, and saved in
the run folder with the registry password redacted. The password itself comes from an environment variable that
lab.yaml names, never from a file, and never reaches a log.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import DeployError
from harness.inventory import RegistryConfig

SCHEMA_FILE = Path(__file__).with_name("deployment-2.0.schema.json")
TWIN_VALUE_MAX = 512  # a twin's string value; longer createOptions are split (iotedgedev does the same)
TWIN_VALUE_CHUNKS = 8
EDGE_RUNTIME_VERSION = "1.4"  # edgeAgent / edgeHub images (mcr.microsoft.com/azureiotedge-*:1.4, the LTS)
MODULE_ID = "jetsonhil"
OUTPUT = "detections"
REDACTED = "<redacted>"


@dataclass(frozen=True)
class ModuleConfig:
    """What the module is told through its twin's desired properties."""

    backend: str = "auto"
    precision: str = "fp32"
    thresholds: dict[str, float] = field(default_factory=lambda: {"conf": 0.25, "iou": 0.45})

    def desired(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "thresholds": dict(self.thresholds)}


def chunked_create_options(options: Mapping[str, Any]) -> dict[str, str]:
    """createOptions as IoT Edge takes them: compact JSON in 512-character twin values, `createOptions`,
    `createOptions01`, ... (at most 8)."""
    text = json.dumps(options, separators=(",", ":"))
    chunks = [text[i:i + TWIN_VALUE_MAX] for i in range(0, len(text), TWIN_VALUE_MAX)] or [""]
    if len(chunks) > TWIN_VALUE_CHUNKS:
        raise DeployError(f"the module's createOptions are {len(text)} characters: IoT Edge takes at most "
                          f"{TWIN_VALUE_MAX * TWIN_VALUE_CHUNKS} ({TWIN_VALUE_CHUNKS} twin values of {TWIN_VALUE_MAX})")
    return {"createOptions" if i == 0 else f"createOptions{i:02d}": chunk for i, chunk in enumerate(chunks)}


def joined_create_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The createOptions a module's settings carry, put back together (what edgeAgent does)."""
    keys = sorted((k for k in settings if k.lower().startswith("createoptions")), key=lambda k: (len(k), k))
    return json.loads("".join(settings[k] for k in keys))


def module_create_options(jetson: bool, api_port: int) -> dict[str, Any]:
    """The module's container: the NVIDIA runtime on a Jetson (CUDA and TensorRT come from the host), the state
    folder on the host so the outbox survives a new container, and the API on the board's loopback only."""
    host_config: dict[str, Any] = {
        "Binds": ["/var/lib/jetson-hil-module:/var/lib/jetson-hil-module"],
        "PortBindings": {f"{api_port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(api_port)}]},
    }
    if jetson:
        host_config["Runtime"] = "nvidia"
    return {"ExposedPorts": {f"{api_port}/tcp": {}}, "HostConfig": host_config}


def build_manifest(image: str, config: ModuleConfig, *, create_options: Mapping[str, Any], ttl_s: int = 7200,
                   registry: RegistryConfig | None = None, environ: Mapping[str, str] = os.environ,
                   version: str = "1") -> dict[str, Any]:
    """The whole manifest (`modulesContent`), validated; `create_options` the module container's (see
    module_create_options); `version` is the module's, so edgeAgent restarts it only when it changes."""
    runtime_settings: dict[str, Any] = {"minDockerVersion": "v1.25", "loggingOptions": ""}
    if registry is not None:
        runtime_settings["registryCredentials"] = {"jetsonhil": registry.credentials(environ)}
    system = f"mcr.microsoft.com/azureiotedge-{{}}:{EDGE_RUNTIME_VERSION}"
    manifest = {"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": runtime_settings},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": system.format("agent")}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": system.format("hub")}},
            },
            "modules": {MODULE_ID: {
                "version": version, "type": "docker", "status": "running", "restartPolicy": "always",
                "settings": {"image": image, **chunked_create_options(create_options)},
            }},
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": {"detectionsToCloud": f"FROM /messages/modules/{MODULE_ID}/outputs/{OUTPUT} INTO $upstream"},
            "storeAndForwardConfiguration": {"timeToLiveSecs": ttl_s},
        }},
        MODULE_ID: {"properties.desired": config.desired()},
    }}
    validate(manifest)
    return manifest


@cache
def _validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(json.loads(SCHEMA_FILE.read_text()))


def validate(manifest: Mapping[str, Any]) -> None:
    """Against the deployment schema 2.0; the first problem in one line, naming where it is."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(the manifest)"
        raise DeployError(f"deployment manifest invalid at {where}: {error.message}")


def redacted(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with every registry password replaced: what the run folder keeps."""
    safe = copy.deepcopy(dict(manifest))
    settings = safe["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    for credential in settings.get("registryCredentials", {}).values():
        credential["password"] = REDACTED
    return safe


def save(manifest: Mapping[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(redacted(manifest), indent=1) + "\n")
    return path

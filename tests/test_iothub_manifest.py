"""The IoT Edge deployment manifest of the module, checked against the deployment schema 2.0 as SchemaStore
publishes it (../shared/data/azure), chunked createOptions, the route to $upstream, and credentials that never
reach the saved file."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from harness.errors import ConfigError, DeployError
from harness.inventory import RegistryConfig
from harness.iothub.manifest import (
    MODULE_ID,
    REDACTED,
    SCHEMA_FILE,
    TWIN_VALUE_MAX,
    ModuleConfig,
    build_manifest,
    chunked_create_options,
    joined_create_options,
    module_create_options,
    save,
    validate,
)

SHARED_SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "data" / "azure" / \
    "azure-iot-edge-deployment-2.0.schema.json"
IMAGE = "registry.lab.example/jetson-hil-module:3f2a9c"
REGISTRY = RegistryConfig(address="registry.lab.example", username_env="LAB_REGISTRY_USER",
                          password_env="LAB_REGISTRY_PASSWORD")
ENV = {"LAB_REGISTRY_USER": "lab", "LAB_REGISTRY_PASSWORD": "s3cret-registry-password"}


def manifest(**options) -> dict:
    return build_manifest(IMAGE, ModuleConfig(backend="tensorrt", precision="int8"),
                          create_options=module_create_options(True, 8470), registry=REGISTRY, environ=ENV, **options)


def test_the_shipped_schema_is_schemastores() -> None:
    if not SHARED_SCHEMA.is_file():
        pytest.skip(f"{SHARED_SCHEMA} is not on this machine")
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(SHARED_SCHEMA.read_text())


def test_the_manifest_runs_the_module_on_the_nvidia_runtime_and_routes_its_output_upstream() -> None:
    built = manifest(ttl_s=86400)
    jsonschema.Draft4Validator(json.loads(SCHEMA_FILE.read_text())).validate(built)  # independently of validate()
    content = built["modulesContent"]
    module = content["$edgeAgent"]["properties.desired"]["modules"][MODULE_ID]
    assert module["settings"]["image"] == IMAGE and module["status"] == "running"
    options = joined_create_options(module["settings"])
    assert options["HostConfig"]["Runtime"] == "nvidia"
    assert options["HostConfig"]["PortBindings"]["8470/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8470"}]
    hub = content["$edgeHub"]["properties.desired"]
    route = f"FROM /messages/modules/{MODULE_ID}/outputs/detections INTO $upstream"
    assert hub["routes"] == {"detectionsToCloud": route}
    assert hub["storeAndForwardConfiguration"] == {"timeToLiveSecs": 86400}
    assert content[MODULE_ID]["properties.desired"] == {
        "backend": "tensorrt", "precision": "int8", "thresholds": {"conf": 0.25, "iou": 0.45}}
    cpu = build_manifest(IMAGE, ModuleConfig(), create_options=module_create_options(False, 8470))
    cpu_module = cpu["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][MODULE_ID]
    assert "Runtime" not in joined_create_options(cpu_module["settings"])["HostConfig"]


def test_long_create_options_are_split_into_twin_values_and_too_long_ones_refused() -> None:
    options = {"HostConfig": {"Binds": [f"/data/camera{i}:/in/camera{i}:ro" for i in range(60)]}}
    chunks = chunked_create_options(options)
    assert list(chunks)[:3] == ["createOptions", "createOptions01", "createOptions02"]
    assert all(len(chunk) <= TWIN_VALUE_MAX for chunk in chunks.values())
    assert joined_create_options(chunks) == options
    with pytest.raises(DeployError, match="at most 4096"):
        chunked_create_options({"HostConfig": {"Binds": [f"/data/camera{i}:/in/camera{i}:ro" for i in range(200)]}})


def test_registry_password_comes_from_the_environment_and_never_reaches_the_saved_file(tmp_path: Path) -> None:
    built = manifest()
    settings = built["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    assert settings["registryCredentials"]["jetsonhil"]["password"] == ENV["LAB_REGISTRY_PASSWORD"]  # sent as is
    saved = save(built, tmp_path / "deployment.json").read_text()
    assert ENV["LAB_REGISTRY_PASSWORD"] not in saved and REDACTED in saved
    with pytest.raises(ConfigError, match="LAB_REGISTRY_PASSWORD") as info:
        build_manifest(IMAGE, ModuleConfig(), create_options=module_create_options(True, 8470), registry=REGISTRY,
                       environ={"LAB_REGISTRY_USER": "lab"})
    assert "\n" not in str(info.value)


def test_an_invalid_manifest_is_one_line_naming_where() -> None:
    built = manifest()
    built["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][MODULE_ID]["restartPolicy"] = "sometimes"
    with pytest.raises(DeployError) as info:
        validate(built)
    message = str(info.value)
    assert f"modulesContent/$edgeAgent/properties.desired/modules/{MODULE_ID}/restartPolicy" in message
    assert "'sometimes'" in message and "\n" not in message


def test_a_module_name_with_a_dot_is_refused_naming_the_schema_path() -> None:
    built = manifest()
    modules = built["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    modules["jetson.hil"] = modules.pop(MODULE_ID)
    with pytest.raises(DeployError) as info:
        validate(built)
    assert str(info.value) == ("deployment manifest invalid at modulesContent/$edgeAgent/properties.desired/modules: "
                               "'jetson.hil' does not match any of the regexes: '^[a-zA-Z0-9_-]+$'")

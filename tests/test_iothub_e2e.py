"""`--deploy iothub` end to end on a virtual board: the suites deploy through the virtual lab's IoT Hub (real
HTTPS, SAS signatures, the azure-iot-hub SDK), the board's emulated edgeAgent runs what the hub says, and the
correctness suite sees the module it deployed. What the emulation does and does not cover: harness/virtual/edge.py.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.deploy.iothub import MANIFEST_FILE
from harness.iothub.manifest import MODULE_ID, joined_create_options
from harness.virtual.edge import hub_dir
from harness.virtual.hub import device_key
from tests.module_copies import module_copy
from tests.suite_runs import outcomes, suites

pytestmark = pytest.mark.virtual

#: the module exits with code 3 whatever it is asked to do: IoT Edge restarts it, and backs off
CRASHING_MODULE = ("module/__main__.py", "    args = _parser().parse_args(argv)\n",
                   "    raise SystemExit(3)\n")


def agent_twin(device: str) -> dict:
    """The $edgeAgent twin as the virtual hub holds it, read through the SDK as the harness reads it."""
    from harness.iothub.hub import AGENT, EdgeDevice
    from harness.virtual.hub import ensure_hub

    hub = ensure_hub(hub_dir())
    return EdgeDevice(hub.connection_string, device, hub.ca_file).twin(AGENT)["properties"]


def test_the_correctness_suite_passes_through_iot_hub(board_name: str, tmp_path: Path) -> None:
    done, junit = suites(tmp_path, "iothub", "--deploy", "iothub", "-k", "correctness",
                         tests="suites/test_correctness.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = outcomes(junit)
    assert results and set(results.values()) == {"passed"}, results
    assert results["test_detections_match_golden[fp32]"] == "passed"
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert properties["deploy_method"] == "iothub"

    manifest = json.loads((tmp_path / "iothub" / MANIFEST_FILE).read_text())["modulesContent"]
    module = manifest["$edgeAgent"]["properties.desired"]["modules"][MODULE_ID]
    assert joined_create_options(module["settings"])["Cmd"][0] == "run"
    assert manifest[MODULE_ID]["properties.desired"]["precision"] == "fp32"

    # the session put the device's deployment back: it had none, so the runtime alone, and the module stopped
    deadline = time.monotonic() + 30
    while (twin := agent_twin(board_name))["reported"].get("modules") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert twin["desired"]["modules"] == {} and twin["reported"]["modules"] == {}, twin

    secrets = [(hub_dir() / "hub.secret").read_text().strip()]
    secrets.append(device_key(secrets[0], board_name))
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        text = path.read_bytes().decode(errors="replace")
        assert not any(secret in text for secret in secrets), path
        assert "SharedAccessSignature" not in text and "SharedAccessKey=" not in text, path


def test_a_module_in_backoff_fails_the_deploy_with_its_exit_code(board_name: str, tmp_path: Path) -> None:
    crashing = module_copy(tmp_path, CRASHING_MODULE)
    started = time.monotonic()
    done, junit = suites(tmp_path, "backoff", "--deploy", "iothub", "--module", crashing, "-k", "health_endpoint",
                         tests="suites/test_correctness.py")
    assert done.returncode == 1, done.stdout[-3000:]
    assert outcomes(junit) == {"test_health_endpoint_reports_a_running_pipeline": "error"}
    assert f"{MODULE_ID} on {board_name} is backoff (exit code 3, module exited with code 3)" in done.stdout, \
        done.stdout[-3000:]
    assert time.monotonic() - started < 240  # not the deployment timeout: edgeAgent's first report says it

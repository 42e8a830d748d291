#!/usr/bin/python3
"""The virtual board's IoT Edge device side: an emulation of edgeAgent, not IoT Edge.

Like edgeAgent it reads the device's desired deployment from the `$edgeAgent` module twin on the hub (the device
signs its own SAS tokens with its key from CONFIG, as IoT Edge's provisioning gives it one), starts, restarts and
stops the modules it names, and reports what edgeAgent reports: lastDesiredVersion, lastDesiredStatus and per
module runtimeStatus, exitCode, statusDescription, restartCount. Unlike IoT Edge it has no container engine: a
module's image is looked up in IMAGES (`<registry>/<name>:<tag>` -> IMAGES/<name>/<tag>, which the virtual lab
stages there: the module's code and virtualenv) and run as a process, `venv/bin/python -m module` with the
createOptions' Cmd and Env. The rest of createOptions (binds, ports, the nvidia runtime) and edgeHub (routes,
store-and-forward) are not emulated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CONFIG = "/etc/jetson-hil/edge/config.json"
IMAGES = "/var/lib/jetson-hil-edge/images"
API_VERSION = "2021-04-12"
POLL_S = 0.5
UNREACHABLE_POLL_S = 5.0  # a hub that is down (the virtual lab's stopped) is asked less often, and logged once
STOP_TIMEOUT_S = 10.0
BACKOFF_MAX_S = 30.0
AGENT = "$edgeAgent"


def log(text: str) -> None:
    sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + text + "\n")
    sys.stderr.flush()


class Hub:
    """The device's HTTPS client of its hub; the key never leaves this object."""

    def __init__(self, config: dict) -> None:
        self.url = "https://" + config["hub"]
        self.hostname, self.device = config["hostname"], config["device_id"]
        self._key = base64.b64decode(config["device_key"])
        self._tls = ssl.create_default_context(cafile=config["ca_file"])

    def _token(self) -> str:
        resource = urllib.parse.quote_plus(f"{self.hostname}/devices/{self.device}")
        expiry = str(int(time.time()) + 3600)
        digest = hmac.new(self._key, f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
        sig = urllib.parse.quote(base64.b64encode(digest).decode(), safe="")
        return f"SharedAccessSignature sr={resource}&sig={sig}&se={expiry}"

    def call(self, method: str, path: str, body: object = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}?api-version={API_VERSION}", data=data, method=method,
                                         headers={"Authorization": self._token(), "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10, context=self._tls) as answer:
            text = answer.read()
        return json.loads(text) if text else {}

    def desired(self) -> dict:
        return self.call("GET", f"/twins/{self.device}/modules/{AGENT}")["properties"]["desired"]

    def report(self, patch: dict) -> None:
        self.call("PATCH", f"/twins/{self.device}/modules/{AGENT}/reported", patch)


def image_root(image: str) -> str:
    name_tag = image.rsplit("/", 1)[-1]
    name, _, tag = name_tag.partition(":")
    return os.path.join(IMAGES, name, tag or "latest")


def create_options(settings: dict) -> dict:
    """createOptions put back together from their 512-character chunks, as edgeAgent does."""
    keys = sorted((k for k in settings if k.lower().startswith("createoptions")), key=lambda k: (len(k), k))
    text = "".join(settings[k] for k in keys)
    return json.loads(text) if text else {}


class Module:
    """One module of the deployment: its process, restarts and what edgeAgent reports of it."""

    def __init__(self, name: str, spec: dict) -> None:
        self.name, self.spec = name, spec
        settings = spec.get("settings", {})
        self.image = settings.get("image", "")
        self.options = create_options(settings)
        self.root = image_root(self.image)
        self.process = None
        self.restarts = 0
        self.exit_code = 0
        self.next_start = 0.0
        self.status, self.description = "stopped", ""

    def _start(self) -> None:
        python = os.path.join(self.root, "venv", "bin", "python")
        if not os.access(python, os.X_OK):
            self._failed(1, f"image {self.image} not found on the device")
            return
        env = dict(os.environ, JETSON_HIL_ENGINE_CACHE=os.path.join(self.root, "engines"))
        env.update(item.split("=", 1) for item in self.options.get("Env", []) if "=" in item)
        os.makedirs(os.path.join(self.root, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.root, "run"), exist_ok=True)
        with open(os.path.join(self.root, "logs", "module.log"), "ab") as out:
            self.process = subprocess.Popen([python, "-m", "module", *self.options.get("Cmd", [])],
                                            cwd=os.path.join(self.root, "app"), env=env, stdout=out, stderr=out,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(self.root, "run", "module.pid"), "w") as f:
            f.write(str(self.process.pid))
        self.status, self.description = "running", ""
        log(f"{self.name}: started {self.image} (pid {self.process.pid})")

    def _failed(self, code: int, why: str) -> None:
        self.exit_code, self.restarts = code, self.restarts + 1
        self.process = None
        if self.spec.get("restartPolicy", "always") == "never":
            self.status, self.description = "failed", why
            self.next_start = float("inf")
        else:  # edgeAgent's back-off: restarts wait longer each time, up to a ceiling
            self.status, self.description = "backoff", why
            self.next_start = time.monotonic() + min(2.0 ** min(self.restarts, 5), BACKOFF_MAX_S)
        log(f"{self.name}: {why} (exit code {code}); {self.status}")

    def step(self) -> None:
        if self.spec.get("status", "running") != "running":
            self.stop()
            return
        if self.process is not None and self.process.poll() is not None:
            self._failed(self.process.returncode, f"module exited with code {self.process.returncode}")
        if self.process is None and time.monotonic() >= self.next_start:
            self._start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            log(f"{self.name}: stopping {self.image} (pid {self.process.pid})")
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        self.status, self.description = "stopped", ""

    def reported(self) -> dict:
        return {"runtimeStatus": self.status, "exitCode": self.exit_code, "statusDescription": self.description,
                "restartCount": self.restarts, "version": self.spec.get("version", ""),
                "settings": {"image": self.image}}


def kill_leftovers() -> None:
    """Modules a previous agent started (it died): edgeAgent's restart starts the deployment afresh."""
    for name in os.listdir(IMAGES) if os.path.isdir(IMAGES) else []:
        for tag in os.listdir(os.path.join(IMAGES, name)):
            pidfile = os.path.join(IMAGES, name, tag, "run", "module.pid")
            try:
                with open(pidfile) as f:
                    os.killpg(int(f.read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def load_config() -> dict | None:
    try:
        with open(CONFIG) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def reconcile(modules: dict, desired: dict) -> dict:
    """Make the running modules the desired ones; edgeAgent's lastDesiredStatus for them."""
    wanted = desired.get("modules")
    if desired.get("schemaVersion") not in ("1.0", "1.1") or not isinstance(wanted, dict):
        return {"code": 400, "description": "the deployment has no schemaVersion 1.x or no modules"}
    changed = [n for n in modules if modules[n].spec != wanted.get(n)]
    for name in changed:
        modules.pop(name).stop()
    for name, spec in wanted.items():
        modules.setdefault(name, Module(name, spec))
    return {"code": 200, "description": ""}


def run() -> None:
    """Poll the hub, apply what changed, keep the modules running (also while the hub is unreachable, as
    edgeAgent does offline), and report what changed."""
    kill_leftovers()
    modules: dict[str, Module] = {}
    applied, status, last_report, config, hub = None, {"code": 200, "description": ""}, None, None, None
    unreachable = ""
    while True:
        time.sleep(UNREACHABLE_POLL_S if unreachable else POLL_S)
        fresh = load_config()
        if fresh is None:
            continue
        if fresh != config:  # (re)provisioned: a new hub address or key
            config, hub, applied, last_report = fresh, Hub(fresh), None, None
        try:
            desired = hub.desired()
            unreachable = ""
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            if str(exc) != unreachable:
                log(f"hub unreachable: {exc}")
            unreachable, desired = str(exc), None
        if desired is not None and desired.get("$version") != applied:
            status, applied = reconcile(modules, desired), desired.get("$version")
        for module in modules.values():
            module.step()
        report = {"lastDesiredVersion": applied, "lastDesiredStatus": status,
                  "systemModules": {"edgeAgent": {"runtimeStatus": "running"}},
                  "modules": {name: m.reported() for name, m in modules.items()}}
        if not unreachable and report != last_report:
            try:
                hub.report(report)
                last_report = report
            except (OSError, urllib.error.URLError, ValueError) as exc:
                log(f"reporting to the hub failed: {exc}")


if __name__ == "__main__":
    run()

"""The virtual lab's IoT Hub: the REST calls the harness makes through the real azure-iot-hub SDK, over HTTPS with
a self-signed certificate, each request's api-version and SAS signature checked against the hub's (service) or
the device's key, and a device side through which the virtual boards' edge agent reads its desired deployment and
reports. What it emulates is the wire: module twins (desired with $version, reported), applyConfigurationContent.
Azure's cloud cannot run here; this stands in for it at the HTTPS boundary, nothing more (no registry of device
identities: a device's key is derived from the hub's key and its id, so every device id is known).

`ensure_hub()` keeps one running for the virtual lab (a background process, its key and certificate in the
virtual boards' state folder, so a restarted hub is the same hub); `LocalHub` serves one in-process.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from filelock import FileLock

from harness.errors import HarnessError

API_VERSION = "2021-04-12"  # what azure-iot-hub 2.x sends (its generated REST client's version)
KEY_NAME = "iothubowner"
#: the name virtual boards reach the harness host by (Docker's host-gateway)
BOARD_SIDE_NAME = "harness-host"
START_TIMEOUT_S = 20.0


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def device_key(hub_key: str, device: str) -> str:
    """A device's symmetric key, derived from the hub's: what a hub would have registered for it."""
    return base64.b64encode(hmac.new(base64.b64decode(hub_key), device.encode(), hashlib.sha256).digest()).decode()


def signature(key: str, resource: str, expiry: str) -> str:
    digest = hmac.new(base64.b64decode(key), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sas_token(key: str, resource: str, key_name: str | None = None, ttl_s: int = 3600) -> str:
    """What the device side signs with (the SDK signs the service side the same way)."""
    expiry = str(int(time.time()) + ttl_s)
    sr = urllib.parse.quote_plus(resource)
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(signature(key, sr, expiry), safe='')}&se={expiry}"
    return token + (f"&skn={key_name}" if key_name else "")


def register(directory: Path, device: str) -> str:
    """Create the device's identity on the hub in `directory` (what `az iot hub device-identity create` does on
    Azure); its key."""
    (directory / "devices").mkdir(exist_ok=True)
    (directory / "devices" / device).touch()
    return device_key((directory / "hub.secret").read_text().strip(), device)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the harness) and BOARD_SIDE_NAME (the virtual boards)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName(BOARD_SIDE_NAME)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "hub.pem", directory / "hub.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class Twin:
    desired: dict[str, Any] = field(default_factory=lambda: {"$version": 1})
    reported: dict[str, Any] = field(default_factory=lambda: {"$version": 1})


class LocalHub:
    """`with LocalHub(folder) as hub:` serves on `address`; `hub.connection_string` is the service's, `hub.ca_file`
    the certificate to trust, `hub.requests` every (method, path, status) it answered. A folder that already has a
    key and certificate keeps them (the same hub after a restart)."""

    def __init__(self, directory: Path, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.directory = directory
        key_file = directory / "hub.secret"
        if not key_file.is_file():
            key_file.write_text(_key())
            key_file.chmod(0o600)
        self.key = key_file.read_text().strip()
        self.twins: dict[tuple[str, str], Twin] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.ca_file, cert_key = directory / "hub.pem", directory / "hub.key"
        if not (self.ca_file.is_file() and cert_key.is_file()):
            _certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, cert_key)
        self.server = ThreadingHTTPServer(address, _handler(self))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.connection_string = f"HostName={self.host};SharedAccessKeyName={KEY_NAME};SharedAccessKey={self.key}"

    def device_key(self, device: str) -> str:
        return device_key(self.key, device)

    def register(self, device: str) -> str:
        return register(self.directory, device)

    def knows(self, device: str) -> bool:
        return (self.directory / "devices" / device).is_file()

    def __enter__(self) -> LocalHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def twin(self, device: str, module: str) -> Twin:
        return self.twins.setdefault((device, module), Twin())

    def authorized(self, header: str, device: str | None) -> bool:
        """A service token signed with the hub's key, or (device side) one the device signed for itself."""
        if not header.startswith("SharedAccessSignature "):
            return False
        fields = dict(part.split("=", 1) for part in header[len("SharedAccessSignature "):].split("&"))
        if int(fields.get("se", "0")) < time.time():
            return False
        sig = urllib.parse.unquote(fields.get("sig", ""))
        if fields.get("skn") == KEY_NAME and fields.get("sr") == urllib.parse.quote_plus(self.host):
            return hmac.compare_digest(sig, signature(self.key, fields["sr"], fields["se"]))
        if device is not None and fields.get("sr") == urllib.parse.quote_plus(f"{self.host}/devices/{device}"):
            return hmac.compare_digest(sig, signature(self.device_key(device), fields["sr"], fields["se"]))
        return False

    def apply(self, device: str, modules_content: dict[str, Any]) -> None:
        with self.lock:
            for module, section in modules_content.items():
                twin = self.twin(device, module)
                twin.desired = {**section["properties.desired"], "$version": twin.desired["$version"] + 1}

    def report(self, device: str, module: str, patch: dict[str, Any]) -> None:
        with self.lock:
            twin = self.twin(device, module)
            twin.reported = {**twin.reported, **patch, "$version": twin.reported["$version"] + 1}


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    twin_path = re.compile(r"^/twins/(?P<device>[^/]+)/modules/(?P<module>[^/]+)(?P<reported>/reported)?$")
    apply_path = re.compile(r"^/devices/(?P<device>[^/]+)/applyConfigurationContent$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # the tests read hub.requests instead
            pass

        def _answer(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            hub.requests.append((self.command, self.path.split("?")[0], status))

        def _route(self) -> tuple[str, re.Match[str]] | None:
            url = urllib.parse.urlsplit(self.path)
            if urllib.parse.parse_qs(url.query).get("api-version") != [API_VERSION]:
                self._answer(400, {"Message": f"api-version must be {API_VERSION}"})
                return None
            path = urllib.parse.unquote(url.path)
            for name, pattern in (("twin", twin_path), ("apply", apply_path)):
                if (found := pattern.match(path)) is not None:
                    device_side = name == "twin" and (found["reported"] or self.command == "GET")
                    device = found["device"] if device_side else None  # the device may read and report its own
                    if not hub.authorized(self.headers.get("Authorization", ""), device):
                        self._answer(401, {"Message": "unauthorized: bad or expired SharedAccessSignature"})
                        return None
                    if not hub.knows(found["device"]):
                        self._answer(404, {"Message": f"DeviceNotFound: device {found['device']} is not registered"})
                        return None
                    return name, found
            self._answer(404, {"Message": f"no route {path}"})
            return None

        def _body(self) -> Any:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")

        def do_GET(self) -> None:
            routed = self._route()
            if routed is None:
                return
            _, found = routed
            twin = hub.twin(found["device"], found["module"])
            self._answer(200, {"deviceId": found["device"], "moduleId": found["module"], "etag": "AAAA",
                               "properties": {"desired": twin.desired, "reported": twin.reported}})

        def do_POST(self) -> None:
            routed = self._route()
            if routed is None:
                return
            name, found = routed
            if name != "apply":
                self._answer(405, {"Message": "POST only applies a configuration"})
                return
            hub.apply(found["device"], self._body()["modulesContent"])
            self._answer(204)

        def do_PATCH(self) -> None:  # the device side: edgeAgent (or a module) reporting
            routed = self._route()
            if routed is None:
                return
            name, found = routed
            if name != "twin" or not found["reported"]:
                self._answer(405, {"Message": "PATCH .../reported only"})
                return
            hub.report(found["device"], found["module"], self._body())
            self._answer(200)

    return Handler


@dataclass(frozen=True)
class RunningHub:
    """The virtual lab's hub as its clients see it."""

    directory: Path
    port: int
    pid: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "hub.pem"

    def key(self) -> str:
        return (self.directory / "hub.secret").read_text().strip()

    @property
    def connection_string(self) -> str:
        return f"HostName={self.host};SharedAccessKeyName={KEY_NAME};SharedAccessKey={self.key()}"

    def register(self, device: str) -> str:
        return register(self.directory, device)


def _alive(info: Path) -> RunningHub | None:
    try:
        state = json.loads(info.read_text())
        os.kill(state["pid"], 0)
        with socket.create_connection(("127.0.0.1", state["port"]), timeout=2):
            return RunningHub(info.parent, state["port"], state["pid"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_hub(directory: Path) -> RunningHub:
    """The virtual lab's hub, started in the background (once; reused while it runs). It listens on every
    address, as the boards reach it through Docker's gateway; every request must carry a valid signature."""
    directory.mkdir(parents=True, exist_ok=True)
    info = directory / "hub.json"
    with FileLock(str(directory / "hub.lock"), timeout=START_TIMEOUT_S):
        running = _alive(info)
        if running is not None:
            return running
        info.unlink(missing_ok=True)
        with open(directory / "hub.log", "ab") as log:
            subprocess.Popen([sys.executable, "-m", "harness.virtual.hub", str(directory)], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while (running := _alive(info)) is None:
            if time.monotonic() > deadline:
                raise HarnessError(f"the virtual IoT Hub did not start within {START_TIMEOUT_S:g} s; see "
                                   f"{directory / 'hub.log'}")
            time.sleep(0.1)
        return running


def stop_hub(directory: Path) -> bool:
    """Stop the virtual lab's hub if it runs; whether it did."""
    running = _alive(directory / "hub.json")
    if running is None:
        return False
    os.kill(running.pid, signal.SIGTERM)
    return True


def serve(directory: Path) -> None:
    hub = LocalHub(directory, ("0.0.0.0", 0))
    state = json.dumps({"pid": os.getpid(), "port": hub.server.server_address[1]})
    (directory / "hub.json.tmp").write_text(state)
    os.replace(directory / "hub.json.tmp", directory / "hub.json")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    hub.server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))

"""A local IoT Hub for the tests: the REST calls the harness makes through the real azure-iot-hub SDK, over HTTPS
with a self-signed certificate, each request's api-version and SAS signature checked against the hub's (service)
or the device's key, and a device side through which an edgeAgent stand-in reads its desired deployment and
reports. What it emulates is the wire: module twins (desired with $version, reported), applyConfigurationContent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import ssl
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

API_VERSION = "2021-04-12"  # what azure-iot-hub 2.x sends (its generated REST client's version)
KEY_NAME = "iothubowner"


def _key() -> str:
    return base64.b64encode(hashlib.sha256(str(time.time_ns()).encode()).digest()).decode()


def signature(key: str, resource: str, expiry: str) -> str:
    digest = hmac.new(base64.b64decode(key), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sas_token(key: str, resource: str, key_name: str | None = None, ttl_s: int = 3600) -> str:
    """What the device side signs with (the SDK signs the service side the same way)."""
    expiry = str(int(time.time()) + ttl_s)
    sr = urllib.parse.quote_plus(resource)
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(signature(key, sr, expiry), safe='')}&se={expiry}"
    return token + (f"&skn={key_name}" if key_name else "")


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
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
    """`with LocalHub(tmp) as hub:` serves on 127.0.0.1; `hub.connection_string` is the service's, `hub.ca_file`
    the certificate to trust, `hub.requests` every (method, path, status) it answered."""

    def __init__(self, directory: Path, devices: tuple[str, ...]) -> None:
        self.key = _key()
        self.device_keys = {device: _key() for device in devices}
        self.twins: dict[tuple[str, str], Twin] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.ca_file, key_file = _certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.connection_string = f"HostName={self.host};SharedAccessKeyName={KEY_NAME};SharedAccessKey={self.key}"

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
        if device in self.device_keys and fields.get("sr") == urllib.parse.quote_plus(f"{self.host}/devices/{device}"):
            return hmac.compare_digest(sig, signature(self.device_keys[device], fields["sr"], fields["se"]))
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

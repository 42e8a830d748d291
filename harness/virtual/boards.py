"""Start, find and stop virtual boards (containers), each with its own SSH host key and client key."""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from docker.errors import NotFound
from docker.models.containers import Container

from harness.errors import HarnessError
from harness.inventory import BoardEntry, SshTransportConfig
from harness.profiles import get_profile
from harness.virtual.edge import iothub_config
from harness.virtual.engine import docker_client
from harness.virtual.image import ensure_board_image
from harness.virtual.recipe import ARCHES, host_arch

LABEL = "jetson-hil.virtual"
STATE_DIR_ENV = "JETSON_HIL_VIRTUAL_DIR"
SSH_READY_TIMEOUT_S = 60.0
#: a board under qemu-user boots its Python tools 10-20x slower before sshd answers
EMULATED_SSH_READY_TIMEOUT_S = 300.0
# Docker's default masked paths less /sys/firmware: the board's own tmpfs there carries the device
# tree (/sys/firmware/devicetree/base), as on a Jetson; Docker would hide it behind a read-only mask.
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi"]


def state_dir(name: str) -> Path:
    root = Path(os.environ.get(STATE_DIR_ENV, Path.home() / ".cache" / "jetson-hil" / "virtual"))
    return root / name


@dataclass(frozen=True)
class VirtualBoard:
    name: str
    profile: str
    port: int
    status: str
    arch: str

    @property
    def key_file(self) -> Path:
        return state_dir(self.name) / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return state_dir(self.name) / "known_hosts"

    def entry(self, tags: tuple[str, ...] = ("virtual",)) -> BoardEntry:
        """The inventory entry that reaches this board (plain SSH, as for a real one)."""
        return BoardEntry(name=self.name, profile=self.profile, tags=list(tags), transport=SshTransportConfig(
            kind="ssh", host="127.0.0.1", port=self.port, user="root", key=self.key_file,
            known_hosts=self.known_hosts), iothub=iothub_config(self.name),
            # no TensorRT here, as on a JetPack without it: the host CPU's ONNX Runtime, chosen explicitly
            backend="onnxruntime")

    @classmethod
    def of(cls, container: Container) -> VirtualBoard:
        labels = container.labels
        return cls(container.name, labels["jetson-hil.profile"], int(labels["jetson-hil.port"]), container.status,
                   labels.get("jetson-hil.arch", host_arch()))


def _keypair() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (content, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_ssh(port: int, timeout: float = SSH_READY_TIMEOUT_S) -> None:
    """Bounded wait until sshd answers with its banner on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise HarnessError(f"virtual board on port {port}: SSH did not answer within {timeout:.0f}s ({last})")


def find(name: str, client: docker.DockerClient | None = None) -> VirtualBoard | None:
    client = client or docker_client()
    try:
        container = client.containers.get(name)
    except NotFound:
        return None
    return VirtualBoard.of(container) if LABEL in container.labels else None


def list_boards() -> list[VirtualBoard]:
    client = docker_client()
    return [VirtualBoard.of(c) for c in client.containers.list(all=True, filters={"label": LABEL})]


def default_name(profile: str, arch: str | None = None) -> str:
    """virtual-PROFILE on this machine's architecture, virtual-PROFILE-ARCH on another."""
    return f"virtual-{profile}" if arch in (None, host_arch()) else f"virtual-{profile}-{arch}"


def up(profile_name: str, name: str | None = None, arch: str | None = None) -> VirtualBoard:
    """Start a virtual board of `profile_name` for `arch` (this machine's by default; another runs under
    qemu-user), or return the running one of that name."""
    profile = get_profile(profile_name)
    arch = arch or host_arch()
    if arch not in ARCHES:
        raise HarnessError(f"virtual board architecture {arch!r}: one of {', '.join(ARCHES)}")
    name = name or default_name(profile.name, arch)
    ready_s = SSH_READY_TIMEOUT_S if arch == host_arch() else EMULATED_SSH_READY_TIMEOUT_S
    client = docker_client()
    existing = find(name, client)
    if existing is not None and (existing.profile, existing.arch) != (profile.name, arch):
        raise HarnessError(f"a virtual board named {name!r} already runs profile {existing.profile} on "
                           f"{existing.arch}: stop it (hil virtual down {name}) or choose another --name")
    if existing is not None:
        container = client.containers.get(name)
        if container.status != "running":
            container.start()
        wait_for_ssh(existing.port, ready_s)
        return find(name, client) or existing
    image = ensure_board_image(client, profile, arch)
    port = _free_port()
    directory = state_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    client_key, client_pub = _keypair()
    host_key, host_pub = _keypair()
    key_file = directory / "id_ed25519"
    key_file.write_bytes(client_key)
    key_file.chmod(0o600)
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub.decode()}\n")
    host_config = client.api.create_host_config(
        port_bindings={22: ("127.0.0.1", port)},
        cap_add=["NET_ADMIN"],
        nano_cpus=int(profile.virtual.cpus * 1e9),
        mem_limit=f"{profile.virtual.memory_mb}m",
        tmpfs={"/run": "", "/sys/firmware": ""},
        restart_policy={"Name": "unless-stopped"},
        extra_hosts={"harness-host": "host-gateway"},
    )
    host_config["MaskedPaths"] = MASKED_PATHS
    created = client.api.create_container(
        image, name=name, hostname=name, detach=True, ports=[22], host_config=host_config,
        labels={LABEL: "1", "jetson-hil.profile": profile.name, "jetson-hil.port": str(port), "jetson-hil.arch": arch})
    container = client.containers.get(created["Id"])
    container.put_archive("/", _tar({
        "etc/ssh/ssh_host_ed25519_key": (host_key, 0o600),
        "etc/ssh/ssh_host_ed25519_key.pub": (host_pub + b"\n", 0o644),
        "root/.ssh/authorized_keys": (client_pub + b"\n", 0o600),
    }))
    container.start()
    wait_for_ssh(port, ready_s)
    board = find(name, client)
    assert board is not None
    return board


def down(name: str) -> bool:
    """Stop and remove a virtual board; False when there was none of that name."""
    client = docker_client()
    if find(name, client) is None:
        return False
    client.containers.get(name).remove(force=True)
    return True

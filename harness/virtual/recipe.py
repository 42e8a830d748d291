"""What goes into a virtual board's image: the Debian rootfs recipe and the profile's board files."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from harness.deploy.wheelhouse import PythonTarget
from harness.profiles import DeviceProfile

ROOTFS_OVERLAY = Path(__file__).parent / "rootfs"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("JETSON_HIL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("openssh-server", "python3", "python3-venv", "iptables", "iproute2", "procps", "ca-certificates")
BASE_REPOSITORY = "jetson-hil/base"
BOARD_REPOSITORY = "jetson-hil/board"
TOOLS = {"/usr/sbin/nvpmodel": "nvpmodel", "/usr/bin/jetson_clocks": "jetson_clocks",
         "/usr/bin/tegrastats": "tegrastats", "/sbin/reboot": "reboot", "/usr/bin/jetson-model": "jetson-model"}
# What a virtual board models instead of measuring; the harness records these as source=modeled.
MODELED = ("power", "temperature", "gpu", "clocks", "memory")
# The processes whose work a real board does on its GPU: the detection module (`python -m module ...`).
GPU_STAND_IN = [["-m", "module"]]
# jetson-stats, whose jtop service runs on the board as on a lab's Jetson: installed offline from wheels the host
# downloads for the base's python3 (bookworm: 3.11, glibc 2.36); the same release the tests read lines with
JETSON_STATS = "jetson-stats==7.2.2"
BASE_PYTHON = PythonTarget(3, 11, platform.machine(), (2, 36))


def digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "big") + part)
    return sha.hexdigest()[:12]


def base_tag() -> str:
    """The base rootfs image, named by its recipe so a changed recipe means a rebuild."""
    recipe = f"minbase {DEBIAN_SUITE} {DEBIAN_MIRROR} {' '.join(BASE_PACKAGES)}".encode()
    return f"{BASE_REPOSITORY}:{digest(recipe)}"


def board_spec(profile: DeviceProfile) -> dict:
    """The profile as the board model reads it: its calibration under `model`."""
    spec = profile.model_dump(mode="json")
    spec["model"] = {**spec["virtual"].pop("model"), "gpu_stand_in": GPU_STAND_IN}
    return spec


def modeled_file(profile: DeviceProfile) -> str:
    """/etc/jetson-hil/modeled: the categories the board models, then what of its model is assumed, and why."""
    model = profile.virtual.model
    lines = [*MODELED, "# what of this board's model is assumed rather than taken from a real board:"]
    lines += [f"# assumption: {name}: {why}" for name, why in model.assumptions.items()]
    lines += ["# assumption: the GPU: the detection module's processes stand in for its work (their CPU time is "
              "GPU load)", "# assumption: an emulated core does what one host CPU does"]
    return "\n".join(lines) + "\n"


def nv_tegra_release(profile: DeviceProfile) -> str:
    major, minor, patch = profile.virtual.l4t.split(".")
    return (f"# R{major} (release), REVISION: {minor}.{patch}, GCID: 00000000, BOARD: generic, "
            f"EABI: aarch64, DATE: virtual jetson-hil board\n")


def nvpmodel_conf(profile: DeviceProfile) -> str:
    """/etc/nvpmodel.conf in the real file's syntax, for tools and people that read it."""
    lines = ["< PARAM TYPE=FILE NAME=CPU_ONLINE >"]
    lines += [f"CORE_{c} /sys/devices/system/cpu/cpu{c}/online" for c in range(profile.cpu_cores)]
    for mode in profile.power_modes:
        lines.append(f"< POWER_MODEL ID={mode.id} NAME={mode.name} >")
        lines += [f"CPU_ONLINE CORE_{c} {int(c < mode.online_cores)}" for c in range(profile.cpu_cores)]
        lines.append(f"CPU MAX_FREQ {int(mode.cpu_max_mhz * 1000)}")
        lines.append(f"GPU MAX_FREQ {int(mode.gpu_max_mhz * 1_000_000)}")
    lines.append(f"< PM_CONFIG DEFAULT={profile.default_power_mode} >")
    return "\n".join(lines) + "\n"


@dataclass
class BoardContext:
    """The Docker build context of one profile's image: files by path inside the image."""

    profile: DeviceProfile
    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    wheels: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: DeviceProfile, base: str, wheels: Path) -> BoardContext:
        """`wheels`: a folder of jetson-stats' wheels for BASE_PYTHON."""
        ctx = cls(profile, base, wheels={path.name: path.read_bytes() for path in sorted(wheels.glob("*.whl"))})
        for path in sorted(ROOTFS_OVERLAY.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                ctx.files[str(path.relative_to(ROOTFS_OVERLAY))] = path.read_bytes()
        ctx.files.update({
            "etc/nv_tegra_release": nv_tegra_release(profile).encode(),
            "etc/nvpmodel.conf": nvpmodel_conf(profile).encode(),
            "etc/jetson-hil/board.json": json.dumps(board_spec(profile), indent=1).encode(),
            "etc/jetson-hil/modeled": modeled_file(profile).encode(),
            "usr/lib/jetson-hil/devicetree/model": profile.device_tree_model.encode() + b"\0",
            "usr/lib/jetson-hil/devicetree/compatible": b"".join(c.encode() + b"\0" for c in profile.compatible),
            "etc/ssh/sshd_config.d/jetson-hil.conf": (
                b"PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
                b"AllowTcpForwarding yes\nClientAliveInterval 15\n"),
        })
        return ctx

    def dockerfile(self) -> str:
        links = " && ".join(f"ln -sf /usr/lib/jetson-hil/jetson_emu.py {path}" for path in TOOLS)
        site = f"/usr/local/lib/python{BASE_PYTHON.major}.{BASE_PYTHON.minor}/dist-packages"
        return (f"FROM {self.base}\nCOPY wheels/ /tmp/wheels/\n"
                # where `sudo pip3 install jetson-stats` puts it on a board: importable by every python3 user
                f"RUN python3 -m venv /tmp/pip && /tmp/pip/bin/pip install --quiet --no-index --no-deps --target "
                f"{site} /tmp/wheels/*.whl && rm -rf /tmp/pip /tmp/wheels && groupadd --system jtop\n"
                "COPY rootfs/ /\n"
                "RUN chmod 0755 /usr/lib/jetson-hil/jetson_emu.py /usr/lib/jetson-hil/entrypoint "
                f"/usr/lib/jetson-hil/jtop_service.py /usr/lib/jetson-hil/edge_agent.py && {links} "
                "&& rm -f /etc/ssh/ssh_host_* && mkdir -p /var/lib/nvpmodel /root/.ssh && chmod 700 /root/.ssh\n"
                f'LABEL jetson-hil.profile="{self.profile.name}"\n'
                'ENTRYPOINT ["/usr/lib/jetson-hil/entrypoint"]\n')

    def tag(self) -> str:
        parts = [self.dockerfile().encode()] + [p.encode() + b"\0" + c for p, c in sorted(self.files.items())]
        parts += [name.encode() + b"\0" + content for name, content in sorted(self.wheels.items())]
        return f"{BOARD_REPOSITORY}:{self.profile.name}-{digest(*parts)}"

    def write(self, directory: Path) -> None:
        (directory / "Dockerfile").write_text(self.dockerfile())
        for rel, content in self.files.items():
            target = directory / "rootfs" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (directory / "wheels").mkdir()
        for name, content in self.wheels.items():
            (directory / "wheels" / name).write_bytes(content)

"""What goes into a virtual board's image: the Debian rootfs recipe and the profile's board files."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from harness.board.identity import L4T_TO_JETPACK
from harness.deploy.wheelhouse import PythonTarget
from harness.profiles import DeviceProfile
from harness.results.modeled import EMULATED_CPU

ROOTFS_OVERLAY = Path(__file__).parent / "rootfs"
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
# downloads for the base's python3; the same release the tests read lines with
JETSON_STATS = "jetson-stats==7.2.2"
#: Debian's name of a CPU architecture → the kernel's (platform.machine())
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
JETSON_ARCH = "arm64"


@dataclass(frozen=True)
class Userspace:
    """What a board's Python packages depend on: its python3 and its C library."""

    python: tuple[int, int]
    glibc: tuple[int, int]


#: the Debian releases deb.debian.org still serves (buster, glibc 2.28, has moved to archive.debian.org, which
#: these machines cannot reach), with their python3 and glibc
DEBIAN = {"bullseye": Userspace((3, 9), (2, 31)), "bookworm": Userspace((3, 11), (2, 36))}
#: JetPack's Ubuntu by L4T major release: 32 (JetPack 4) is 18.04, 35 (JetPack 5) 20.04, 36 (JetPack 6) 22.04
JETPACK = {32: Userspace((3, 6), (2, 27)), 35: Userspace((3, 8), (2, 31)), 36: Userspace((3, 10), (2, 35))}


def host_arch() -> str:
    """This machine's architecture, by Debian's name."""
    machine = platform.machine()
    return next((name for name, kernel in ARCHES.items() if kernel == machine), machine)


def jetpack_userspace(profile: DeviceProfile) -> Userspace:
    return JETPACK[int(profile.virtual.l4t.split(".")[0])]


def debian_suite(profile: DeviceProfile) -> str:
    """The fetchable Debian release closest to the profile's JetPack: nearest glibc, then nearest python3."""
    want = jetpack_userspace(profile)
    return min(DEBIAN, key=lambda suite: (abs(DEBIAN[suite].glibc[1] - want.glibc[1]),
                                          abs(DEBIAN[suite].python[1] - want.python[1])))


def base_python(suite: str, arch: str) -> PythonTarget:
    """The python3 of a base image, as the wheelhouse resolves for it."""
    userspace = DEBIAN[suite]
    return PythonTarget(*userspace.python, ARCHES.get(arch, arch), userspace.glibc)


def digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "big") + part)
    return sha.hexdigest()[:12]


def base_tag(suite: str = "bookworm", arch: str | None = None) -> str:
    """The base rootfs image, named by its recipe so a changed recipe means a rebuild."""
    arch = arch or host_arch()
    recipe = f"minbase {suite} {arch} {DEBIAN_MIRROR} {' '.join(BASE_PACKAGES)}".encode()
    return f"{BASE_REPOSITORY}:{suite}-{arch}-{digest(recipe)}"


def board_spec(profile: DeviceProfile) -> dict:
    """The profile as the board model reads it: its calibration under `model`."""
    spec = profile.model_dump(mode="json")
    spec["model"] = {**spec["virtual"].pop("model"), "gpu_stand_in": GPU_STAND_IN}
    return spec


def modeled_file(profile: DeviceProfile, arch: str) -> str:
    """/etc/jetson-hil/modeled: the categories the board models (and, under qemu, that its CPU is emulated),
    then what of its model is assumed, and why."""
    model = profile.virtual.model
    emulated = [f"{EMULATED_CPU}  # {ARCHES.get(arch, arch)} under qemu-user"] if arch != host_arch() else []
    lines = [*MODELED, *emulated, "# what of this board's model is assumed rather than taken from a real board:"]
    lines += [f"# assumption: {name}: {why}" for name, why in model.assumptions.items()]
    lines += ["# assumption: the GPU: the detection module's processes stand in for its work (their CPU time is "
              "GPU load)", "# assumption: an emulated core does what one host CPU does"]
    return "\n".join(lines) + "\n"


def differences_file(profile: DeviceProfile, arch: str) -> str:
    """/etc/jetson-hil/differs: where this board's userspace differs from the JetPack it names, one
    `what: this board's (JetPack's)` a line, so that no one reads a result from it as the real board's."""
    jetpack = L4T_TO_JETPACK.get(profile.virtual.l4t, f"L4T {profile.virtual.l4t}")
    ours, theirs = DEBIAN[debian_suite(profile)], jetpack_userspace(profile)
    lines = [f"# this virtual {profile.display_name} runs Debian {debian_suite(profile)}: the fetchable release "
             f"closest to JetPack {jetpack}'s Ubuntu"]
    for what, mine, real in (("python", ours.python, theirs.python), ("glibc", ours.glibc, theirs.glibc)):
        if mine != real:
            lines.append(f"{what}: {'.'.join(map(str, mine))} (JetPack {jetpack}: {'.'.join(map(str, real))})")
    if arch != JETSON_ARCH:
        lines.append(f"architecture: {ARCHES.get(arch, arch)} (JetPack {jetpack}: aarch64)")
    if arch != host_arch():
        lines.append(f"cpu: {ARCHES.get(arch, arch)} emulated by qemu-user on {platform.machine()} "
                     "(10-20x slower than the host; its FPS describe neither)")
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
    arch: str = field(default_factory=host_arch)
    files: dict[str, bytes] = field(default_factory=dict)
    wheels: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: DeviceProfile, base: str, wheels: Path, arch: str | None = None) -> BoardContext:
        """`wheels`: a folder of jetson-stats' wheels for the base's python3."""
        ctx = cls(profile, base, arch or host_arch(),
                  wheels={path.name: path.read_bytes() for path in sorted(wheels.glob("*.whl"))})
        for path in sorted(ROOTFS_OVERLAY.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                ctx.files[str(path.relative_to(ROOTFS_OVERLAY))] = path.read_bytes()
        ctx.files.update({
            "etc/nv_tegra_release": nv_tegra_release(profile).encode(),
            "etc/nvpmodel.conf": nvpmodel_conf(profile).encode(),
            "etc/jetson-hil/board.json": json.dumps(board_spec(profile), indent=1).encode(),
            "etc/jetson-hil/modeled": modeled_file(profile, ctx.arch).encode(),
            "etc/jetson-hil/differs": differences_file(profile, ctx.arch).encode(),
            "usr/lib/jetson-hil/devicetree/model": profile.device_tree_model.encode() + b"\0",
            "usr/lib/jetson-hil/devicetree/compatible": b"".join(c.encode() + b"\0" for c in profile.compatible),
            "etc/ssh/sshd_config.d/jetson-hil.conf": (
                b"PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
                b"AllowTcpForwarding yes\nClientAliveInterval 15\n"),
        })
        return ctx

    def dockerfile(self) -> str:
        links = " && ".join(f"ln -sf /usr/lib/jetson-hil/jetson_emu.py {path}" for path in TOOLS)
        python = DEBIAN[debian_suite(self.profile)].python
        site = f"/usr/local/lib/python{python[0]}.{python[1]}/dist-packages"
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
        return f"{BOARD_REPOSITORY}:{self.profile.name}-{self.arch}-{digest(*parts)}"

    def write(self, directory: Path) -> None:
        (directory / "Dockerfile").write_text(self.dockerfile())
        for rel, content in self.files.items():
            target = directory / "rootfs" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (directory / "wheels").mkdir()
        for name, content in self.wheels.items():
            (directory / "wheels" / name).write_bytes(content)

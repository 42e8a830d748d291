"""Who a board is: device-tree model and compatible, module part number, L4T and JetPack release."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from harness.errors import ParseError
from harness.profiles import DeviceProfile
from harness.transport.base import Transport

# L4T release -> JetPack release (NVIDIA JetPack archive; jetson-stats' table agrees).
L4T_TO_JETPACK: dict[str, str] = {
    "39.2.0": "7.2", "38.4.0": "7.1", "38.2.0": "7.0",
    "36.4.7": "6.2.1", "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4.2": "6.1.1", "36.4.0": "6.1",
    "36.3.0": "6.0", "36.2.0": "6.0 DP",
    "35.6.4": "5.1.6", "35.6.2": "5.1.5", "35.6.1": "5.1.5", "35.6.0": "5.1.4", "35.5.0": "5.1.3",
    "35.4.1": "5.1.2", "35.3.1": "5.1.1", "35.2.1": "5.1", "35.1.0": "5.0.2",
    "32.7.6": "4.6.6", "32.7.5": "4.6.5", "32.7.4": "4.6.4", "32.7.3": "4.6.3", "32.7.2": "4.6.2",
    "32.7.1": "4.6.1", "32.6.1": "4.6", "32.5.2": "4.5.1", "32.5.1": "4.5.1", "32.5.0": "4.5",
    "32.4.4": "4.4.1", "32.4.3": "4.4", "32.3.1": "4.3", "32.2.1": "4.2.2", "32.1.0": "4.2",
}

_RELEASE_RE = re.compile(r"#\s*R(?P<major>\d+)\s*\(release\),\s*REVISION:\s*(?P<minor>\d+)\.(?P<patch>\d+)")
_DPKG_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)")
_PART_RE = re.compile(r"p\d{4}-\d{4}")

# Where the device tree is exposed; /sys/firmware/devicetree/base is the fallback (containers).
DEVICE_TREE_ROOTS = ("/proc/device-tree", "/sys/firmware/devicetree/base")


@dataclass(frozen=True)
class L4tRelease:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def jetpack(self) -> str | None:
        """The JetPack release this L4T belongs to (None when not in the table)."""
        return L4T_TO_JETPACK.get(str(self))


def parse_nv_tegra_release(text: str) -> L4tRelease:
    """Parse the first line of /etc/nv_tegra_release: `# R36 (release), REVISION: 4.3, ...`."""
    match = _RELEASE_RE.search(text)
    if not match:
        raise ParseError(f"/etc/nv_tegra_release: expected '# R<major> (release), REVISION: <m>.<p>', "
                         f"got {text.strip()[:80]!r}")
    return L4tRelease(int(match["major"]), int(match["minor"]), int(match["patch"]))


def parse_l4t_core_version(text: str) -> L4tRelease:
    """Parse `dpkg-query --show nvidia-l4t-core` version, e.g. `36.4.3-20250107153711`."""
    match = _DPKG_RE.match(text.strip())
    if not match:
        raise ParseError(f"nvidia-l4t-core version: expected 'X.Y.Z-...', got {text.strip()[:80]!r}")
    return L4tRelease(int(match["major"]), int(match["minor"]), int(match["patch"]))


def split_dt_strings(raw: str) -> list[str]:
    """Device-tree string properties are NUL-separated and NUL-terminated."""
    return [part.strip() for part in raw.replace("\x00", "\n").splitlines() if part.strip()]


def module_part_number(compatible: list[str]) -> str | None:
    """The module P-number: an entry `nvidia,pNNNN-NNNN` of its own, else the module after `+` in the first."""
    for entry in compatible:
        name = entry.split(",", 1)[-1]
        if _PART_RE.fullmatch(name):
            return name
    if compatible:
        parts = _PART_RE.findall(compatible[0].split("+")[-1])
        if parts:
            return parts[0]
    return None


@dataclass(frozen=True)
class Identity:
    model: str
    compatible: tuple[str, ...]
    part_number: str | None
    l4t: L4tRelease | None
    device_tree: str

    @property
    def soc(self) -> str | None:
        """The SoC is the last compatible entry, e.g. `nvidia,tegra234` -> `tegra234`."""
        return self.compatible[-1].split(",", 1)[-1] if self.compatible else None

    @property
    def jetpack(self) -> str | None:
        return self.l4t.jetpack if self.l4t else None


_SECTION = "@@jetson-hil:"


def _identity_script(roots: tuple[str, ...]) -> str:
    """One round trip: model and compatible from the first readable device-tree root, then the L4T release."""
    quoted = " ".join(shlex.quote(r) for r in roots)
    return (
        f"for d in {quoted}; do if [ -r \"$d/model\" ]; then "
        f"echo '{_SECTION}dt'; echo \"$d\"; echo '{_SECTION}model'; tr '\\0' '\\n' < \"$d/model\"; echo; "
        f"echo '{_SECTION}compatible'; tr '\\0' '\\n' < \"$d/compatible\" 2>/dev/null; echo; break; fi; done; "
        f"echo '{_SECTION}release'; head -n 1 /etc/nv_tegra_release 2>/dev/null; "
        f"echo '{_SECTION}dpkg'; dpkg-query --showformat='${{Version}}' --show nvidia-l4t-core 2>/dev/null; true"
    )


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_SECTION):
            current = sections.setdefault(line[len(_SECTION):], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def read_identity(transport: Transport, roots: tuple[str, ...] = DEVICE_TREE_ROOTS) -> Identity:
    """Read the board's identity in one command; raise ParseError when it does not look like a Jetson."""
    result = transport.run(_identity_script(roots), timeout=20).check()
    found = _sections(result.stdout)
    if not found.get("model"):
        raise ParseError(f"{transport.target}: no device-tree model under {' or '.join(roots)}; "
                         "is this a Jetson running L4T?")
    compatible = split_dt_strings(found.get("compatible", ""))
    l4t: L4tRelease | None = None
    if found.get("release"):
        l4t = parse_nv_tegra_release(found["release"])
    elif found.get("dpkg"):
        l4t = parse_l4t_core_version(found["dpkg"])
    return Identity(
        model=split_dt_strings(found["model"])[0],
        compatible=tuple(compatible),
        part_number=module_part_number(compatible),
        l4t=l4t,
        device_tree=found.get("dt", ""),
    )


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def profile_mismatch(identity: Identity, profile: DeviceProfile) -> str | None:
    """Why the board cannot be the model `profile` describes, or None.

    The SoC must match; then one piece of board-level evidence must: a device-tree compatible entry
    (the SoC's own entry does not count: Xavier NX and AGX Xavier share tegra194), the module part
    number, or the device-tree model. A board that reports none of these is judged by its SoC alone.
    """
    if identity.soc and identity.soc != profile.soc:
        return f"its SoC is {identity.soc}, the profile's is {profile.soc}"
    board_level = [c for c in identity.compatible if not c.endswith(f",{identity.soc}")]
    if not board_level and not identity.part_number:
        return None
    if set(board_level) & set(profile.compatible) or identity.part_number in profile.part_numbers:
        return None
    if identity.model == profile.device_tree_model:
        return None
    return (f"neither its compatible ({', '.join(board_level) or 'none'}), its module part number "
            f"({identity.part_number or 'unknown'}) nor its model is one of the profile's "
            f"({', '.join(profile.part_numbers)}; {profile.device_tree_model!r})")


def l4t_outside(identity: Identity, profile: DeviceProfile) -> str | None:
    """Why the board's L4T release is outside the profile's range, or None (also when it is unknown)."""
    if identity.l4t is None:
        return None
    now = _version(str(identity.l4t))
    if _version(profile.l4t.min) <= now <= _version(profile.l4t.max):
        return None
    return f"L4T {identity.l4t} is outside the {profile.name} profile's range {profile.l4t.min}..{profile.l4t.max}"

"""Wheels for the board's Python and CPU, downloaded on the harness host and installed offline.

Lab boards often have no route to a package index; the harness host does. The wheelhouse is
cached per (requirements, target), so only the first deploy to a new kind of board downloads.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from harness.errors import DeployError

CACHE_DIR = Path(os.environ.get("JETSON_HIL_WHEEL_CACHE", "~/.cache/jetson-hil/wheels")).expanduser()
PIP_TIMEOUT_S = 900
OLDEST_MANYLINUX_MINOR = 17


@dataclass(frozen=True)
class PythonTarget:
    """What a wheel must match on the board: interpreter version, CPU and glibc."""

    major: int
    minor: int
    machine: str
    glibc: tuple[int, int]

    @property
    def tag(self) -> str:
        return f"cp{self.major}{self.minor}-{self.machine}-glibc{self.glibc[0]}.{self.glibc[1]}"

    def platforms(self) -> list[str]:
        """manylinux tags the board's glibc accepts, newest first."""
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(self.glibc[1], OLDEST_MANYLINUX_MINOR - 1, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]


#: one board command printing "3 11 x86_64 glibc 2.36"
PROBE_COMMAND = (
    "python3 -c \"import sys, platform; print(sys.version_info[0], sys.version_info[1], platform.machine(), "
    "*platform.libc_ver())\""
)


def parse_probe(text: str) -> PythonTarget:
    parts = text.split()
    if len(parts) < 5 or parts[3] != "glibc":
        raise DeployError(f"cannot tell the board's Python from {text.strip()!r}: is python3 (3.8+) installed?")
    major, minor = int(parts[0]), int(parts[1])
    glibc_major, glibc_minor = (int(x) for x in parts[4].split(".")[:2])
    if (major, minor) < (3, 8):
        raise DeployError(f"the board has Python {major}.{minor}; the module needs 3.8 or newer")
    return PythonTarget(major, minor, parts[2], (glibc_major, glibc_minor))


def requirements_sha(requirements: str, target: PythonTarget) -> str:
    return hashlib.sha256(f"{target.tag}\n{requirements}".encode()).hexdigest()[:16]


def wheelhouse(requirements: str, target: PythonTarget, console: Console | None = None,
               what: str = "module dependencies") -> Path:
    """A folder of wheels satisfying ``requirements`` on ``target`` (downloaded once, then cached)."""
    folder = CACHE_DIR / f"{target.tag}-{requirements_sha(requirements, target)}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    req_file = folder / "requirements.txt"
    req_file.write_text(requirements)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp",
        "--python-version", f"{target.major}.{target.minor}",
        *[arg for platform in target.platforms() for arg in ("--platform", platform)],
        "-d", str(folder), "-r", str(req_file),
    ]  # fmt: skip
    (console or Console(stderr=True)).print(f"[bold]wheelhouse[/]: downloading {what} for {target.tag}")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DeployError(f"pip download for {target.tag} took over {PIP_TIMEOUT_S} s: check the index") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeployError(f"cannot download {what} for {target.tag}: {last}")
    done.write_text("\n".join(sorted(p.name for p in folder.glob("*.whl"))) + "\n")
    return folder

"""Wheels for the board's Python and CPU, downloaded on the harness host and installed offline.

Lab boards often have no route to a package index; the harness host does. The wheelhouse is
cached per (requirements, target), so only the first deploy to a new kind of board downloads.

pip resolves for the board, not for this host: ``--python-version``/``--platform`` choose the files, and environment
markers (in the requirements and in every dependency's metadata) are evaluated for the board's Python and CPU too,
which pip itself does not do (pypa/pip#11010). A pure-Python requirement that only publishes a source distribution
for the board's Python (paho-mqtt 1.x for Python 3.6) is built into a wheel here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from rich.console import Console

from harness.errors import DeployError

CACHE_DIR = Path(os.environ.get("JETSON_HIL_WHEEL_CACHE", "~/.cache/jetson-hil/wheels")).expanduser()
PIP_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 600
OLDEST_MANYLINUX_MINOR = 17
OLDEST_PYTHON = (3, 6)
#: source distributions one wheelhouse may build before it gives up
MAX_SOURCE_BUILDS = 4
#: a pip that installs manylinux2014 (pip 19.3) and manylinux_2_x (PEP 600, pip 20.3) wheels: a venv starts with the
#: distribution's pip (9.0.1 on JetPack 4, 20.0.2 on JetPack 5), so an offline install upgrades pip from the wheelhouse
#: first (add this to the requirements given to wheelhouse(); 21.3.1 is the last for Python 3.6)
PIP_BOOTSTRAP = "pip>=20.3"
#: files in a source distribution that make a compiled extension: such a source is not built here
COMPILED_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".rs", ".f", ".f90", ".cu")


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

    @property
    def short_tag(self) -> str:
        return f"cp{self.major}{self.minor}-{self.machine}"

    def platforms(self) -> list[str]:
        """manylinux tags the board's glibc accepts, newest first."""
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(self.glibc[1], OLDEST_MANYLINUX_MINOR - 1, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the board's CPython on Linux (the micro version is not probed: .0)."""
        version = f"{self.major}.{self.minor}"
        return {
            "implementation_name": "cpython", "implementation_version": f"{version}.0", "os_name": "posix",
            "platform_machine": self.machine, "platform_system": "Linux", "platform_python_implementation": "CPython",
            "python_full_version": f"{version}.0", "python_version": version, "sys_platform": "linux",
        }  # fmt: skip


#: one board command printing "3 11 x86_64 glibc 2.36" (Python 3.6 syntax; glibc from confstr: before 3.8,
#: platform.libc_ver() reports the newest symbol version the python binary uses, not the system's glibc)
PROBE_COMMAND = (
    "python3 -c \"import os, sys, platform; c = 'CS_GNU_LIBC_VERSION'; "
    "v = (os.confstr(c) or '').split() if c in getattr(os, 'confstr_names', {}) else []; "
    "print(sys.version_info[0], sys.version_info[1], platform.machine(), *(v or platform.libc_ver()))\""
)


def parse_probe(text: str) -> PythonTarget:
    parts = text.split()
    if len(parts) < 5 or parts[3] != "glibc":
        raise DeployError(f"cannot tell the board's Python from {text.strip()!r}: is python3 (3.6+) installed?")
    major, minor = int(parts[0]), int(parts[1])
    glibc_major, glibc_minor = (int(x) for x in parts[4].split(".")[:2])
    if (major, minor) < OLDEST_PYTHON:
        raise DeployError(f"the board has Python {major}.{minor}; the module needs 3.6 or newer")
    return PythonTarget(major, minor, parts[2], (glibc_major, glibc_minor))


def requirements_sha(requirements: str, target: PythonTarget) -> str:
    return hashlib.sha256(f"{target.tag}\n{requirements}".encode()).hexdigest()[:16]


def normalized_name(name: str) -> str:
    """A project name as PEP 503 compares them: opencv_python.Headless == opencv-python-headless."""
    return re.sub(r"[-_.]+", "-", name).lower()


_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirements_for(requirements: str, skip: Iterable[str]) -> str:
    """``requirements`` without the lines that require one of the distributions in ``skip`` (e.g. what the board's
    system Python already provides); comments, options and the other lines, markers and all, stay as they are."""
    dropped = {normalized_name(name) for name in skip}
    kept = []
    for line in requirements.splitlines(keepends=True):
        match = None if line.lstrip().startswith(("#", "-")) else _NAME.match(line)
        if match is None or normalized_name(match.group(1)) not in dropped:
            kept.append(line)
    return "".join(kept)


# pip with environment markers evaluated for the target instead of this host (pip's --python-version and --platform
# choose files only); argv[1] is the target's marker environment as JSON
_PIP_FOR_TARGET = """\
import json, os, runpy, sys
if sys.path and sys.path[0] in ("", os.getcwd()):
    sys.path.pop(0)
from pip._vendor.packaging import markers
target, host = json.loads(sys.argv.pop(1)), markers.default_environment
markers.default_environment = lambda: {**host(), **target}
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


def _target_pip(target: PythonTarget, *args: str) -> list[str]:
    """A pip command resolving for ``target``: its markers, Python version, implementation and platforms."""
    return [
        sys.executable, "-c", _PIP_FOR_TARGET, json.dumps(target.marker_environment()), *args,
        "--disable-pip-version-check", "--progress-bar", "off", "--implementation", "cp",
        "--python-version", f"{target.major}.{target.minor}",
        *[arg for platform in target.platforms() for arg in ("--platform", platform)],
    ]  # fmt: skip


_DOWNLOADING = re.compile(r"\s*Downloading (\S+) \((.+)\)")
_NO_MATCH = re.compile(r"ERROR: No matching distribution found for (.+)")


def _run(command: list[str], timeout_s: float, console: Console, step: str,
         shown: set[str] | None = None) -> tuple[int, list[str]]:
    """Run a pip command, showing each file it downloads (once: ``shown`` holds what was shown); its exit code and
    output lines. Past ``timeout_s`` it and its children (build backends) are killed and one DeployError says which
    step took too long."""
    shown = set() if shown is None else shown
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if (match := _DOWNLOADING.match(line)) and match.group(1) not in shown:
                shown.add(match.group(1))
                console.print(f"  downloading {match.group(1)} ({match.group(2)})", highlight=False, soft_wrap=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise DeployError(f"{step} took over {timeout_s:.0f} s: check the package index") from None
    finally:
        reader.join(timeout=10)
    return code, lines


def _last_error(lines: list[str]) -> str:
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or [line for line in lines if line.strip()] or ["no output"])[-1].removeprefix("ERROR: ")


def _compiled_sources(sdist: Path) -> list[str]:
    if sdist.suffix == ".zip":
        with zipfile.ZipFile(sdist) as archive:
            names = archive.namelist()
    else:
        with tarfile.open(sdist) as archive:
            names = archive.getnames()
    return [name for name in names if name.lower().endswith(COMPILED_SUFFIXES)]


def _pure_for(wheel: str, target: PythonTarget) -> bool:
    """Whether a wheel file name says pure Python that runs on ``target`` (py3-none-any, py2.py3-none-any, ...)."""
    python, abi, platform = wheel.removesuffix(".whl").split("-")[-3:]
    accepted = {"py3", f"py{target.major}", f"cp{target.major}{target.minor}",
                *(f"py{target.major}{m}" for m in range(target.minor + 1))}  # fmt: skip
    return abi == "none" and platform == "any" and bool(accepted.intersection(python.split(".")))


def _build_from_source(requirement: str, target: PythonTarget, built: Path, console: Console,
                       shown: set[str]) -> str:
    """Build ``requirement``'s source distribution into a pure-Python wheel in ``built``; the wheel's file name.

    The source is chosen for the target's Python (its Requires-Python) and built on this host, in pip's isolated
    build environment (so the build needs what the package declares, e.g. setuptools, and nothing installed here).
    A source with compiled extensions is refused unbuilt: a wheel built here would be for this host's CPU."""
    name = _NAME.match(requirement)
    label = name.group(1) if name else requirement
    where = f"{label} has no wheel for {target.short_tag}"
    with tempfile.TemporaryDirectory(prefix="jetson-hil-sdist-") as tmp:
        sdists = Path(tmp) / "sdist"
        console.print(f"  {where}: building it from source", highlight=False, soft_wrap=True)
        # source for this project only: its build requirements (setuptools, ...) come as wheels
        command = _target_pip(target, "download", "--no-deps", f"--no-binary={label if name else ':all:'}",
                              "-d", str(sdists), requirement)  # fmt: skip
        code, lines = _run(command, PIP_TIMEOUT_S, console, f"downloading the source of {label}", shown)
        found = sorted(sdists.glob("*")) if sdists.is_dir() else []
        if code != 0 or not found:
            raise DeployError(f"{where} and no source distribution for it that pip can prepare: {_last_error(lines)}")
        compiled = _compiled_sources(found[0])
        if compiled:
            raise DeployError(f"{where} and is not pure Python: its source {found[0].name} has {compiled[0]}")
        out = Path(tmp) / "wheel"
        command = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--progress-bar", "off",
                   "--no-deps", "-w", str(out), str(found[0])]  # fmt: skip
        code, lines = _run(command, BUILD_TIMEOUT_S, console, f"building {found[0].name}", shown)
        wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
        if code != 0 or not wheels:
            raise DeployError(f"{where} and its source {found[0].name} does not build: {_last_error(lines)}")
        if not _pure_for(wheels[0].name, target):
            raise DeployError(f"{where} and is not pure Python: {found[0].name} builds {wheels[0].name}")
        built.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheels[0], built / wheels[0].name)
        console.print(f"  built {wheels[0].name}", highlight=False, soft_wrap=True)
        return wheels[0].name


def wheelhouse(requirements: str, target: PythonTarget, console: Console | None = None,
               what: str = "module dependencies") -> Path:
    """A folder of wheels satisfying ``requirements`` on ``target`` (downloaded once, then cached; deploys to boards
    alike at once, as in a farm run, wait for the first to fill it)."""
    folder = CACHE_DIR / f"{target.tag}-{requirements_sha(requirements, target)}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock", timeout=PIP_TIMEOUT_S * 2 + BUILD_TIMEOUT_S * MAX_SOURCE_BUILDS):
        if not done.is_file():
            _fill(folder, requirements, target, console or Console(stderr=True), what)
    return folder


def _fill(folder: Path, requirements: str, target: PythonTarget, console: Console, what: str) -> None:
    folder.mkdir(exist_ok=True)
    req_file = folder / "requirements.txt"
    req_file.write_text(requirements)
    built = folder / ".built"  # wheels built from source distributions: pip finds them there
    console.print(f"[bold]wheelhouse[/]: downloading {what} for {target.tag}")
    started = time.monotonic()
    tried: set[str] = set()
    shown: set[str] = set()
    while True:
        links = ["--find-links", str(built)] if built.is_dir() else []
        command = _target_pip(target, "download", "--only-binary=:all:", *links, "-d", str(folder), "-r", str(req_file))
        code, lines = _run(command, PIP_TIMEOUT_S, console, f"pip download for {target.tag}", shown)
        if code == 0:
            break
        missing = next((m.group(1).split(";")[0].strip() for line in lines if (m := _NO_MATCH.match(line))), None)
        key = normalized_name(_NAME.match(missing).group(1)) if missing and _NAME.match(missing) else None
        if key is None or key in tried or len(tried) >= MAX_SOURCE_BUILDS:
            raise DeployError(f"cannot download {what} for {target.tag}: {_last_error(lines)}")
        tried.add(key)
        _build_from_source(missing, target, built, console, shown)
    wheels = sorted(folder.glob("*.whl"))
    size = sum(p.stat().st_size for p in wheels)
    console.print(f"[bold]wheelhouse[/]: {len(wheels)} wheels ({size / 1e6:.0f} MB) for {target.tag} in "
                  f"{time.monotonic() - started:.0f} s")  # fmt: skip
    (folder / ".complete").write_text("\n".join(p.name for p in wheels) + "\n")

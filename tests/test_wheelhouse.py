"""The wheelhouse: the board's Python probe decides which wheels the harness downloads for it, the module's
requirements pick releases per JetPack, and the wheels are resolved with the real package index for JetPack 4.6
(Python 3.6), 5.1 (3.8) and 6.x (3.10) on aarch64."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging import tags
from packaging.utils import parse_wheel_filename
from packaging.version import Version
from rich.console import Console

from harness.deploy import wheelhouse as wh
from harness.deploy.bundle import requirements_text
from harness.deploy.wheelhouse import (
    PIP_BOOTSTRAP,
    PROBE_COMMAND,
    PythonTarget,
    parse_probe,
    requirements_for,
    wheelhouse,
)
from harness.errors import DeployError

ROOT = Path(__file__).resolve().parents[1]

JETPACKS = {
    "4.6": PythonTarget(3, 6, "aarch64", (2, 27)),
    "5.1": PythonTarget(3, 8, "aarch64", (2, 31)),
    "6.x": PythonTarget(3, 10, "aarch64", (2, 35)),
}
QUIET = Console(quiet=True)


@pytest.mark.parametrize(
    ("text", "tag"),
    [("3 6 aarch64 glibc 2.27", "cp36-aarch64-glibc2.27"), ("3 8 aarch64 glibc 2.31", "cp38-aarch64-glibc2.31"),
     ("3 11 x86_64 glibc 2.36", "cp311-x86_64-glibc2.36")],
)  # fmt: skip
def test_board_python_probe_gives_the_wheel_target(text: str, tag: str) -> None:
    target = parse_probe(text)
    assert target.tag == tag
    glibc_minor, machine = int(text.split()[-1].split(".")[1]), text.split()[2]
    assert target.platforms() == [
        *(f"manylinux_2_{m}_{machine}" for m in range(glibc_minor, 16, -1)), f"manylinux2014_{machine}",
    ]


@pytest.mark.parametrize("text", ["", "bash: python3: command not found", "3 5 aarch64 glibc 2.23"])
def test_a_board_without_a_usable_python_is_refused_clearly(text: str) -> None:
    with pytest.raises(DeployError, match=r"python|Python") as refused:
        parse_probe(text)
    assert "\n" not in str(refused.value)
    assert "3.6" in str(refused.value)


def _pythons_36() -> list[str]:
    found = {shutil.which("python3.6"), *glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6"))}
    return sorted(p for p in found if p and subprocess.run([p, "-c", ""], capture_output=True).returncode == 0)


@pytest.mark.parametrize("python", [sys.executable, "python3.6"])
def test_the_probe_command_runs_on_the_boards_pythons(python: str, tmp_path: Path) -> None:
    """PROBE_COMMAND is Python 3.6 syntax (JetPack 4), and reads glibc as the system has it."""
    if python == "python3.6":
        if not _pythons_36():
            pytest.skip("no Python 3.6 on this machine")
        python = _pythons_36()[0]
    (tmp_path / "python3").symlink_to(python)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", PROBE_COMMAND], capture_output=True, text=True, env=env, timeout=30)
    target = parse_probe(result.stdout)
    version = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30).stdout.split()  # fmt: skip
    assert (target.major, target.minor) == tuple(int(v) for v in version)
    assert target.glibc == tuple(int(v) for v in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])


# requirements per board -----------------------------------------------------------------------------------------
def test_requirements_for_drops_the_named_distributions_only() -> None:
    text = requirements_text()
    kept = requirements_for(text, ["OpenCV_Python.Headless"])
    assert "opencv" not in "".join(line for line in kept.splitlines() if not line.startswith("#"))
    dropped = [line for line in text.splitlines(keepends=True) if line not in kept.splitlines(keepends=True)]
    assert len(dropped) == 2 and all(line.startswith("opencv-python-headless") for line in dropped)
    assert 'numpy==1.19.5; python_version < "3.7"\n' in kept  # the others, markers and all
    assert requirements_for(text, []) == text
    assert requirements_for("# numpy is old\nnumpy>=1.17\n--find-links x\nonnx[ref] >=1.12 ; python_version>'3'\n",
                            ["numpy", "onnx"]) == "# numpy is old\n--find-links x\n"  # fmt: skip


# real resolutions -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    target: PythonTarget
    folder: Path
    first_s: float
    cached_s: float

    def versions(self) -> dict[str, Version]:
        return {str(name): version for name, version, *_ in map(parse_wheel_filename, self.wheels())}

    def wheels(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*.whl"))


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("wheel-cache")
        patch.setattr(wh, "CACHE_DIR", path)
        yield path


@pytest.fixture(scope="session", params=list(JETPACKS))
def resolved(request: pytest.FixtureRequest, wheel_cache: Path) -> Resolved:
    """The module's wheelhouse for one JetPack: resolved once per test session, then read from its cache."""
    target = JETPACKS[request.param]
    started = time.monotonic()
    folder = wheelhouse(requirements_text(), target, QUIET)
    first = time.monotonic() - started
    started = time.monotonic()
    assert wheelhouse(requirements_text(), target, QUIET) == folder
    return Resolved(target, folder, first, time.monotonic() - started)


def _accepted(target: PythonTarget) -> set[tags.Tag]:
    version = (target.major, target.minor)
    abi = f"cp{target.major}{target.minor}{'m' if version < (3, 8) else ''}"
    return {*tags.cpython_tags(version, [abi], target.platforms()),
            *tags.compatible_tags(version, f"cp{target.major}{target.minor}", target.platforms())}  # fmt: skip


def test_every_file_is_a_wheel_the_board_accepts(resolved: Resolved) -> None:
    accepted = _accepted(resolved.target)
    assert {p.name for p in resolved.folder.iterdir() if p.is_file()} == {*resolved.wheels(), "requirements.txt",
                                                                          ".complete"}  # fmt: skip
    for wheel in resolved.wheels():
        assert accepted & parse_wheel_filename(wheel)[3], f"{wheel} does not install on {resolved.target.tag}"
    assert (resolved.folder / ".complete").read_text().split() == resolved.wheels()


# what the markers pick per JetPack: (numpy, onnxruntime, onnx, paho-mqtt) as version bounds [low, high)
EXPECTED = {
    "4.6": {"numpy": ("1.19.5", "1.19.6"), "onnxruntime": ("1.10.0", "1.10.1"), "onnx": ("1.11.0", "1.11.1"),
            "opencv-python-headless": ("4.6.0.66", "4.6.0.67"), "paho-mqtt": ("1.6", "2")},
    "5.1": {"numpy": ("1.17", "1.24"), "onnxruntime": ("1.10", None), "onnx": ("1.12", None),
            "opencv-python-headless": ("4.5", "4.12"), "paho-mqtt": ("2", None)},
    "6.x": {"numpy": ("1.17", "2"), "onnxruntime": ("1.10", None), "onnx": ("1.12", None),
            "opencv-python-headless": ("4.5", "4.12"), "paho-mqtt": ("2", None)},
}  # fmt: skip


def test_the_markers_pick_releases_for_each_jetpack(resolved: Resolved) -> None:
    jetpack = next(name for name, target in JETPACKS.items() if target == resolved.target)
    versions = resolved.versions()
    for name, (low, high) in EXPECTED[jetpack].items():
        assert name in versions, f"{name} missing for JetPack {jetpack}: {resolved.wheels()}"
        assert versions[name] >= Version(low) and (high is None or versions[name] < Version(high)), (name, jetpack)
    assert "pip" not in versions  # PIP_BOOTSTRAP only where a deploy asks for it


def test_paho_1x_is_built_from_its_source_for_python_36(resolved: Resolved) -> None:
    paho = next(w for w in resolved.wheels() if w.startswith("paho_mqtt-"))
    built = sorted(p.name for p in (resolved.folder / ".built").glob("*.whl"))
    if resolved.target.minor == 6:
        assert paho.startswith("paho_mqtt-1.") and paho.endswith("-none-any.whl") and built == [paho]
    else:
        assert not built


def test_a_cached_wheelhouse_costs_nothing(resolved: Resolved) -> None:
    assert resolved.first_s < 300
    assert resolved.cached_s < 0.5


def test_a_board_with_its_own_opencv_gets_no_opencv_wheel(wheel_cache: Path) -> None:
    target = JETPACKS["6.x"]
    folder = wheelhouse(requirements_for(requirements_text(), ["opencv-python-headless"]), target, QUIET)
    names = {str(parse_wheel_filename(p.name)[0]) for p in folder.glob("*.whl")}
    assert "opencv-python-headless" not in names and {"numpy", "onnxruntime", "onnx", "paho-mqtt"} <= names


# source distributions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("wheel", "pure"),
    [("paho_mqtt-1.6.1-py3-none-any.whl", True), ("six-1.16.0-py2.py3-none-any.whl", True),
     ("x-1.0-py36-none-any.whl", True), ("x-1.0-cp36-none-any.whl", True), ("x-1.0-py2-none-any.whl", False),
     ("x-1.0-py38-none-any.whl", False), ("x-1.0-cp311-cp311-linux_x86_64.whl", False),
     ("x-1.0-py3-none-linux_x86_64.whl", False), ("x-1.0-cp36-abi3-any.whl", False)],
)  # fmt: skip
def test_only_a_pure_wheel_for_the_boards_python_counts(wheel: str, pure: bool) -> None:
    assert wh._pure_for(wheel, JETPACKS["4.6"]) is pure


def _sdist(folder: Path, name: str, files: dict[str, str]) -> Path:
    root = folder / f"{name}-1.0"
    for path, text in {"setup.py": f"from setuptools import setup\nsetup(name='{name}', version='1.0')\n",
                       **files}.items():  # fmt: skip
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    archive = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    return archive


def test_a_source_with_compiled_code_is_refused_unbuilt(tmp_path: Path) -> None:
    sdist = _sdist(tmp_path, "cext", {"cext.c": "int x;\n"})
    assert wh._compiled_sources(sdist) == ["cext-1.0/cext.c"]
    assert wh._compiled_sources(_sdist(tmp_path / "pure", "pure", {"pure.py": ""})) == []
    with pytest.raises(DeployError, match=r"has no wheel for cp36-aarch64 and is not pure Python: .*cext\.c"):
        wh._build_from_source(str(sdist), JETPACKS["4.6"], tmp_path / "built", QUIET, set())
    assert not (tmp_path / "built").exists()


def test_a_pip_step_past_its_timeout_is_killed_with_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DeployError, match=r"^sleeping took over 1 s: check the package index$"):
        wh._run([sys.executable, "-c", "import time; time.sleep(60)"], 1, QUIET, "sleeping")
    assert time.monotonic() - started < 15


# installing offline on Python 3.6 ---------------------------------------------------------------------------------
def test_the_python36_wheelhouse_installs_offline_after_pip_is_bootstrapped(wheel_cache: Path, tmp_path: Path) -> None:
    """What a JetPack 4 board does, on this machine's CPU: the venv's own pip (9.0.1 on JetPack 4) cannot install
    manylinux2014 wheels; the pip from PIP_BOOTSTRAP can, with no index."""
    if not _pythons_36():
        pytest.skip("no Python 3.6 on this machine")
    import platform

    glibc = tuple(int(v) for v in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])
    target = PythonTarget(3, 6, platform.machine(), glibc)
    folder = wheelhouse(requirements_text() + PIP_BOOTSTRAP + "\n", target, QUIET)
    assert any(w.name.startswith("pip-21.") for w in folder.glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([_pythons_36()[0], "-m", "venv", str(venv)], check=True, timeout=120)
    board = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--no-index", "--find-links", str(folder)]  # fmt: skip
    subprocess.run([*pip, PIP_BOOTSTRAP], check=True, timeout=120, env=board)
    subprocess.run([*pip, "-r", str(folder / "requirements.txt")], check=True, timeout=300, env=board)
    code = "import numpy, onnxruntime, onnx, cv2, paho.mqtt.client; print(numpy.__version__, onnx.__version__)"
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["1.19.5", "1.11.0"], result.stderr
    # and the module itself runs there: JetPack 4's interpreter and wheel set, the shipped model, at each precision
    for precision in ("fp32", "fp16", "int8"):
        bench = subprocess.run([str(venv / "bin" / "python"), "-m", "module", "bench", "--backend", "onnxruntime",
                                "--precision", precision, "--frames", "8", "--warmup", "1"],
                               capture_output=True, text=True, timeout=600, cwd=ROOT,
                               env={**board, "PYTHONPATH": str(ROOT), "JETSON_HIL_ENGINE_CACHE": str(tmp_path / "c")})
        assert bench.returncode == 0, bench.stderr
        doc = json.loads(bench.stdout)
        assert (doc["precision"], doc["versions"]["python"][:4], doc["versions"]["onnxruntime"]) == (
            precision, "3.6.", "1.10.0")
        assert doc["raw_fps"] > 0

"""The stand-in TensorRT (tests/module/fake_tensorrt) against NVIDIA's real Python bindings, name by name.

The stand-in is what proves the backend's TensorRT calls on a machine without a GPU, so it must not invent
API, and what it leaves out of a release must really be gone there. PyPI has NVIDIA's bindings wheels for
8.6 (``tensorrt-bindings==8.6.1``) and 10.3 (``tensorrt-cu12-bindings==10.3.0``), about 1 MB each. They
cannot be imported here (libnvinfer is a separate multi-GB wheel, and there is no GPU), but their pybind11
extension ``tensorrt_bindings/tensorrt.so`` holds each class, method, property and enum member name it
registers as a NUL-terminated C string; the few names NVIDIA defines in Python (``nptype``, ``volume``)
are in the wheel's ``__init__.py``. The string table is one for the whole extension, so a name is checked
as existing somewhere in the bindings, not on the very class where the stand-in has it.

TensorRT 7.x and 8.2 (JetPack 4) were only ever built for Jetson, as debs: PyPI has no wheel of them, so
the 7.1.3 and 8.2.1 releases of the stand-in are not checked here. They have what 8.6 has less the tensor
API of 8.5 and the memory pools of 8.4 (and 7.x less build_serialized_network and the timing cache of 8.0).
"""

from __future__ import annotations

import ast
import enum
import importlib.util
import inspect
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

FAKE_TENSORRT = Path(__file__).resolve().parent / "fake_tensorrt" / "tensorrt" / "__init__.py"
#: downloaded once per machine and user; CI reaches the package index
WHEEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jetson-hil" / "test-wheels"
WHEELS = {"8.6.1": "tensorrt-bindings==8.6.1", "10.3.0": "tensorrt-cu12-bindings==10.3.0"}


class Bindings:
    """The names in one release of NVIDIA's ``tensorrt_bindings`` wheel."""

    def __init__(self, wheel: Path):
        with zipfile.ZipFile(wheel) as archive:
            self._strings = archive.read("tensorrt_bindings/tensorrt.so")
            init = ast.parse(archive.read("tensorrt_bindings/__init__.py"))
        #: defined in Python by NVIDIA's package, not by the extension: nptype, volume, common_enter, ...
        self.python_names = {node.name for node in init.body if isinstance(node, ast.FunctionDef)}

    def defines(self, name: str) -> bool:
        """The extension registers ``name``: it ends a C string (the linker stores a string that is the tail of
        another in that one's bytes, e.g. INT8 in UINT8). A mention inside a docstring is no definition."""
        return name.encode() + b"\0" in self._strings or name in self.python_names


def _wheel(version: str) -> Path:
    folder = WHEEL_CACHE / version
    found = sorted(folder.glob("*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
            "--platform", "manylinux_2_17_x86_64", "--implementation", "cp", "--disable-pip-version-check",
            "-d", str(folder), WHEELS[version],
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"cannot download {WHEELS[version]}:\n{result.stderr}"
        found = sorted(folder.glob("*.whl"))
    return found[-1]


@pytest.fixture(scope="module", params=sorted(WHEELS))
def real(request: pytest.FixtureRequest) -> tuple[str, Bindings]:
    return request.param, Bindings(_wheel(request.param))


def stand_in(version: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The stand-in as release ``version``, loaded under a name of its own (the ``tensorrt`` name stays free)."""
    monkeypatch.setenv("FAKE_TENSORRT_VERSION", version)
    spec = importlib.util.spec_from_file_location(f"fake_tensorrt_{version.replace('.', '_')}", FAKE_TENSORRT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def public_names(fake: ModuleType) -> dict[str, set[str]]:
    """Everything the stand-in shows as TensorRT's: module level (key '') and per class or enum."""
    own = {
        name: value
        for name, value in vars(fake).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == fake.__name__
    }
    names = {"": set(own)}
    for name, value in own.items():
        if isinstance(value, type) and issubclass(value, enum.Enum):
            names[name] = set(value.__members__)
        elif inspect.isclass(value):
            bases = [
                cls for cls in value.__mro__ if cls.__module__ == fake.__name__ and not cls.__name__.startswith("_")
            ]
            names[name] = {member for cls in bases for member in vars(cls) if not member.startswith("_")}
    return names


def test_every_name_of_the_stand_in_is_in_nvidias_bindings(
    real: tuple[str, Bindings], monkeypatch: pytest.MonkeyPatch
) -> None:
    version, bindings = real
    names = public_names(stand_in(version, monkeypatch))
    assert {"Builder", "IBuilderConfig", "ICudaEngine", "IExecutionContext", "Runtime", "OnnxParser"} <= names[""]
    invented = {f"{owner or 'tensorrt'}.{name}" for owner, members in names.items() for name in members}
    invented = {qualified for qualified in invented if not bindings.defines(qualified.rsplit(".", 1)[1])}
    assert not invented, f"the {version} stand-in has names that TensorRT {version} does not: {sorted(invented)}"


def test_what_the_stand_in_drops_in_10_x_is_gone_from_nvidias_10_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """The binding-index API, execute_async_v2, build_engine and max_workspace_size: gone in 10.0, gone here."""
    bindings = Bindings(_wheel("10.3.0"))
    before, after = public_names(stand_in("8.6.1", monkeypatch)), public_names(stand_in("10.3.0", monkeypatch))
    dropped = {name for owner, members in before.items() for name in members - after.get(owner, set())}
    assert {"num_bindings", "get_binding_shape", "execute_async_v2", "build_engine", "max_workspace_size"} <= dropped
    still_there = sorted(name for name in dropped if bindings.defines(name))
    assert not still_there, f"the 10.3.0 stand-in drops names that TensorRT 10.3.0 still has: {still_there}"
    # and what it keeps although deprecated: the explicit-batch flag, ignored since 10.0 (gone in 11)
    assert "EXPLICIT_BATCH" in after["NetworkDefinitionCreationFlag"] and bindings.defines("EXPLICIT_BATCH")

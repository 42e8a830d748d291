"""The board's software stack (`onboard/stack_probe.py`, run by a real python3 over a real transport) and the
readiness line that decides the module's backend before anything is copied."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.board.stack import BoardStack, CudaRuntime, parse_stack, read_stack
from harness.deploy.readiness import assess
from harness.errors import DeployError, HarnessError
from harness.transport.local import LocalTransport
from tests.module.fake_cudart import build as build_cudart

JETPACK_512 = BoardStack(python="3.8.10", machine="aarch64", glibc="2.31", tensorrt="8.5.2.2",
                         cudart=CudaRuntime(soname="libcudart.so.11.0", version="11.4"), opencv="4.5.4", venv=True)
JETPACK_466_NO_TRT = BoardStack(python="3.6.9", machine="aarch64", glibc="2.27", opencv="4.1.1", venv=True)


def _tensorrt_package(root: Path, body: str) -> Path:
    """A `tensorrt` package as JetPack's python3-libnvinfer puts it on sys.path: here only its version."""
    (root / "tensorrt").mkdir(parents=True)
    (root / "tensorrt" / "__init__.py").write_text(body)
    return root


def test_the_probe_reads_this_machines_python_glibc_and_a_jetpack_shaped_tensorrt_and_cudart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_cudart(tmp_path / "cuda", soname="libcudart.so.10.2", version=10020)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    monkeypatch.setenv("PYTHONPATH", str(_tensorrt_package(tmp_path / "site", '__version__ = "8.2.1.8"\n')))
    stack = read_stack(LocalTransport(), "here")
    assert stack.python == ".".join(map(str, sys.version_info[:3]))
    assert stack.glibc and stack.machine
    assert stack.tensorrt == "8.2.1.8" and stack.tensorrt_error is None
    assert stack.cudart == CudaRuntime(soname="libcudart.so.10.2", path=str(tmp_path / "cuda/lib64/libcudart.so.10.2"),
                                       version="10.2")
    assert stack.parts()[1:] == ["TensorRT 8.2.1.8", "CUDA 10.2 (libcudart.so.10.2)"]


def test_a_tensorrt_that_fails_to_import_is_reported_broken_with_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "raise OSError('libnvinfer.so.8: cannot open shared object file: No such file or directory')\n"
    monkeypatch.setenv("PYTHONPATH", str(_tensorrt_package(tmp_path, body)))
    stack = read_stack(LocalTransport(), "here")
    assert stack.tensorrt is None
    assert stack.tensorrt_error == "OSError: libnvinfer.so.8: cannot open shared object file: No such file or directory"
    readiness = assess("nx-01", "4.6.6", stack, "auto")
    with pytest.raises(DeployError) as refused:
        readiness.check()
    assert "TensorRT broken" in str(refused.value)
    assert "sudo apt install --reinstall python3-libnvinfer" in str(refused.value)


def test_junk_from_the_board_is_one_line_naming_it() -> None:
    with pytest.raises(HarnessError) as bad:
        parse_stack("Traceback (most recent call last):\nSyntaxError: invalid syntax\n", "nano-03")
    assert str(bad.value).startswith("nano-03: cannot read the board's software stack (python3 printed "
                                     "'SyntaxError: invalid syntax')")
    assert "\n" not in str(bad.value)


def test_a_ready_jetpack_5_board_runs_tensorrt_in_one_line() -> None:
    readiness = assess("orin-01", "5.1.2", JETPACK_512, "auto")
    assert readiness.check() == "tensorrt"
    assert readiness.line() == ("JetPack 5.1.2 · Python 3.8.10 · TensorRT 8.5.2.2 · CUDA 11.4 (libcudart.so.11.0) "
                                "→ tensorrt")


def test_auto_without_tensorrt_is_refused_naming_the_packages_never_a_cpu_fallback() -> None:
    readiness = assess("nano-02", "4.6.6", JETPACK_466_NO_TRT, "auto")
    assert readiness.backend is None
    with pytest.raises(DeployError) as refused:
        readiness.check()
    message = str(refused.value)
    assert message.startswith("nano-02: JetPack 4.6.6 · Python 3.6.9 · no TensorRT · no CUDA runtime → not ready "
                              "for auto: needs TensorRT's Python bindings: sudo apt install python3-libnvinfer")
    assert "the CUDA runtime (libcudart): sudo apt install nvidia-cuda" in message
    assert "--backend onnxruntime" in message and "\n" not in message


def test_onnxruntime_runs_only_when_asked_and_the_line_says_so() -> None:
    readiness = assess("nano-02", "4.6.6", JETPACK_466_NO_TRT, "onnxruntime")
    assert readiness.check() == "onnxruntime"
    assert readiness.line().endswith("→ onnxruntime (asked for)")


def test_a_board_without_venv_support_is_told_to_install_python3_venv() -> None:
    stack = JETPACK_512.model_copy(update={"venv": False})
    with pytest.raises(DeployError, match="venv support for the module's virtualenv: sudo apt install python3-venv"):
        assess("orin-01", "5.1.2", stack, "auto").check()


def test_a_board_without_python3_is_told_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # bash itself is found by its absolute path; python3 is not
    with pytest.raises(HarnessError) as refused:
        read_stack(LocalTransport(), "tx2-01")
    assert str(refused.value) == ("tx2-01: probing the board's software stack failed: no python3 on the board: "
                                  "install python3 (JetPack ships it)")

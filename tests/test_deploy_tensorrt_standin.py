"""A virtual board made JetPack-shaped: TensorRT's bindings where python3-libnvinfer puts them and libcudart where
JetPack's CUDA does, both stand-ins (tests/module/fake_tensorrt, tests/module/fake_cudart). `auto` must pick
TensorRT, the deploy must not install cuda-python, and the module must run the TensorRT path of that release.

Nothing else differs from a native deploy to a real board: the same probe, readiness line and SSH steps.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.board import Board
from harness.deploy import NativeDeployer, ServiceSpec
from harness.deploy.readiness import readiness_of
from harness.results import RowContext
from harness.trtexec import TRTEXEC, limit_rows
from tests.module.fake_cudart import build as build_cudart
from tests.module.test_tensorrt_backend import FAKE

DATA = Path(__file__).parent / "data" / "jetson"

pytestmark = [pytest.mark.virtual, pytest.mark.parametrize("virtual_board", ["xavier-nx"], indirect=True)]

#: JetPack 4.6's TensorRT and CUDA: the release the virtual Xavier NX (L4T 32.7.6) names
TENSORRT = "8.2.1"
SITE = "/usr/lib/python3/dist-packages/tensorrt"
CUDA_LIB = "/usr/local/cuda-10.2/lib64"


def _sh(board: Board, command: str) -> str:
    return board.transport.run(command, timeout=60).check().stdout


@pytest.fixture
def jetpack_shaped(virtual_board: Board, tmp_path: Path) -> Iterator[Board]:
    """The stand-ins installed on the board for one test, removed after (the board is shared by the session)."""
    library = build_cudart(tmp_path / "cuda", soname="libcudart.so.10.2", version=10020)
    _sh(virtual_board, f"mkdir -p {SITE} {CUDA_LIB}")
    try:
        virtual_board.transport.put(library, f"{CUDA_LIB}/libcudart.so.10.2")
        virtual_board.transport.put(FAKE / "tensorrt" / "__init__.py", f"{SITE}/__init__.py")
        _sh(virtual_board, f"echo {TENSORRT} > {SITE}/VERSION")
        virtual_board._stack = None  # read again: the board changed under this Board object
        yield virtual_board
    finally:
        _sh(virtual_board, f"rm -rf {SITE} /usr/local/cuda-10.2")
        virtual_board._stack = None


def test_auto_picks_jetpacks_tensorrt_and_deploys_without_cuda_python(jetpack_shaped: Board) -> None:
    board = jetpack_shaped
    line = readiness_of(board, "auto").line()
    assert line.startswith("JetPack 4.6.6 · Python 3.")
    assert line.endswith(f"TensorRT {TENSORRT} · CUDA 10.2 (libcudart.so.10.2) → tensorrt")

    handle = NativeDeployer(board).deploy(ServiceSpec(backend="auto", fps_cap=5))
    try:
        info = handle.api("/info")
        assert (info["backend"], info["device"]) == ("tensorrt", "cuda:0 Fake GPU (CPU)")
        assert info["versions"]["tensorrt"] == TENSORRT
        assert info["versions"]["cuda_runtime"] == "10.2"
        venv = f"{handle.root}/venv/bin/python"
        packages = _sh(board, f"{venv} -m pip list --format=freeze --disable-pip-version-check").lower()
        assert "numpy==" in packages and "cuda-python" not in packages and "cuda-bindings" not in packages
        assert not board.transport.run(f"{venv} -c {shlex.quote('import cuda')}", timeout=60).ok
        assert handle.wait_healthy(timeout=120)["status"] == "running"
        _trtexec_is_the_limit_beside_the_modules_raw_fps(board, handle)
    finally:
        handle.stop()


#: a stand-in for JetPack's trtexec at the process boundary: it checks that it was given an existing engine and a
#: shape, keeps its arguments, and prints a real TensorRT 10.9 performance summary
TRTEXEC_STANDIN = """#!/bin/sh
for a in "$@"; do case "$a" in --loadEngine=*) engine="${a#--loadEngine=}";; esac; done
[ -f "$engine" ] || { echo "[E] Error opening engine file: $engine"; exit 1; }
echo "$@" > /tmp/trtexec-args
cat /usr/src/tensorrt/bin/summary.txt
"""


def _trtexec_is_the_limit_beside_the_modules_raw_fps(board: Board, handle) -> None:
    run = handle.run_module(["bench", "--backend", "tensorrt", "--frames", "8", "--warmup", "1"], timeout=300)
    assert run.ok, run.stderr
    bench = json.loads(run.stdout)
    context = RowContext(run="r", board=board.name, profile=board.profile.name, suite="s", test="t")
    absent = limit_rows(board, bench, 1, 2.0, context)
    assert [(r.phase, r.metric, r.value) for r in absent.rows] == [("trtexec", "trtexec_available", 0.0)]
    assert (absent.line, absent.failed) == (f"trtexec not run: no trtexec on {board.name} ({TRTEXEC})", False)
    _sh(board, "mkdir -p /usr/src/tensorrt/bin")
    try:
        board.transport.put(DATA / "trtexec" / "trt10.9-summary.txt", "/usr/src/tensorrt/bin/summary.txt")
        _sh(board, f"cat > {TRTEXEC} <<'EOF'\n{TRTEXEC_STANDIN}EOF\nchmod 755 {TRTEXEC}")
        board._stack = None
        limit = limit_rows(board, bench, 1, 2.0, context)
        figures = {r.metric: r.value for r in limit.rows}
        assert figures["trtexec_available"] == 1 and figures["trtexec_fps"] == pytest.approx(691.435)
        assert figures["raw_over_trtexec"] == pytest.approx(bench["raw_fps"] / 691.435)
        ratio = f"the module's raw {bench['raw_fps']:.1f} FPS is {bench['raw_fps'] / 691.435:.2f} of it"
        assert not limit.failed and limit.line.endswith(ratio)
        args = _sh(board, "cat /tmp/trtexec-args").split()
        assert f"--loadEngine={bench['engine']}" in args
        assert f"--shapes={bench['input_name']}:1x3x{bench['input_hw'][0]}x{bench['input_hw'][1]}" in args

        # an engine inside a container is not on the board's filesystem; junk from trtexec is a warning, not a figure
        elsewhere = limit_rows(board, {**bench, "engine": "/var/cache/in-a-container.engine"}, 1, 2.0, context)
        assert not elsewhere.failed and "is not on" in elsewhere.line and len(elsewhere.rows) == 1
        _sh(board, "echo 'Segmentation fault' > /usr/src/tensorrt/bin/summary.txt")
        junk = limit_rows(board, bench, 1, 2.0, context)
        assert junk.failed and [r.value for r in junk.rows] == [0.0]
        assert junk.line.endswith("no trtexec performance summary found (expected 'Throughput: N qps')")
    finally:
        _sh(board, "rm -rf /usr/src/tensorrt /tmp/trtexec-args")
        board._stack = None


def test_hil_probe_prints_the_boards_stack_line(jetpack_shaped: Board, tmp_path: Path) -> None:
    """`hil probe` reuses the running virtual board (its own lease folder: this session holds ours)."""
    env = {**os.environ, "JETSON_HIL_LEASE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "harness", "probe", "--device", "virtual:xavier-nx", "--backend",
                           "auto", "--lease-timeout", "30"], capture_output=True, text=True, timeout=120, check=False,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert f"TensorRT {TENSORRT} · CUDA 10.2 (libcudart.so.10.2) → tensorrt\n" in done.stdout


def test_auto_on_a_jetson_without_tensorrt_is_refused_by_the_module_itself(virtual_board: Board) -> None:
    """The module's own `auto` on a board with /etc/nv_tegra_release: no silent ONNX Runtime on the CPU."""
    handle = NativeDeployer(virtual_board).deploy(ServiceSpec(fps_cap=5))  # the board's backend: onnxruntime
    try:
        run = handle.run_module(["bench", "--backend", "auto", "--frames", "4"], timeout=120)
        assert not run.ok
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert "backend 'auto' on a Jetson (/etc/nv_tegra_release) needs TensorRT" in lines[0]
        assert "--backend onnxruntime" in lines[0]
    finally:
        handle.stop()

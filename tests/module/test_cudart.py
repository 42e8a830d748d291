"""module/backends/cudart.py, the ctypes binding to libcudart, against real shared libraries.

NVIDIA's own libcudart (the nvidia-cuda-runtime-cu12 wheel) shows that the binding loads it, declares its calls
right and reports what fails here, with no GPU nor driver, in one line. The C stand-in with the same ABI
(tests/module/fake_cudart) carries the data path: pinned memory, streams whose copies land only at synchronize,
its failures on demand and its leak report at exit. Where the environment or another library must be in force,
a fresh ``python -c`` loads the module: its runtime() is loaded once per process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from module.backends.cudart import DEVICE_TO_HOST, HOST_TO_DEVICE, CudaError, CudaRuntime
from tests.module.fake_cudart import build

ROOT = Path(__file__).resolve().parents[2]


def real_libcudart() -> Path:
    """NVIDIA's libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel (the test extra)."""
    try:
        (package,) = importlib.util.find_spec("nvidia.cuda_runtime").submodule_search_locations
    except (ImportError, AttributeError):
        raise ImportError("nvidia-cuda-runtime-cu12 is not installed: pip install -e '.[test]'") from None
    return Path(package) / "lib" / "libcudart.so.12"


REAL = real_libcudart()
#: CUDA's error line: '<CUDA name> (<number>): <CUDA string>'
ERROR = r"(cudaError\w+) \((\d+)\): \S.*"
#: the child's side of run_python: `attempt(call)` is {"value": ...} or {"CudaError": message}
PRELUDE = """
import json, os, sys
from module.backends import cudart

def attempt(call):
    try:
        return {"value": call()}
    except cudart.CudaError as exc:
        return {"CudaError": str(exc)}
"""


def run_python(code: str, **env: str | None) -> dict:
    """PRELUDE + ``code`` in a fresh interpreter with ``env`` set (None: unset), none of CUDA_HOME, LD_LIBRARY_PATH
    or FAKE_CUDART_* inherited; returns the JSON it printed last."""
    inherited = ("CUDA_HOME", "LD_LIBRARY_PATH")
    full = {k: v for k, v in os.environ.items() if k not in inherited and not k.startswith("FAKE_CUDART_")}
    full.update({k: v for k, v in env.items() if v is not None}, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def one_line_error(message: str, soname: str, library: Path | str, call: str) -> tuple[str, int]:
    """``message`` is CudaError's one line for ``call`` on ``library``; returns CUDA's error name and number."""
    assert "\n" not in message, message
    head = f"CUDA runtime {soname} ({library}): {call} failed: "
    assert message.startswith(head), message
    match = re.fullmatch(ERROR, message[len(head) :])
    assert match, message
    return match[1], int(match[2])


# NVIDIA's libcudart, no GPU ---------------------------------------------------------------------------------------
def test_real_runtime_loads_reports_its_version_and_says_in_one_line_why_there_is_no_device() -> None:
    real = CudaRuntime(str(REAL))
    assert (real.library, real.soname) == (str(REAL), "libcudart.so.12")
    assert re.fullmatch(r"12\.\d", real.version()), real.version()
    with pytest.raises(CudaError) as failed:
        real.device_count()
    name, number = one_line_error(str(failed.value), "libcudart.so.12", REAL, "cudaGetDeviceCount")
    # no libcuda.so here: 35; a driver without a GPU: 100
    assert (name, number) in {("cudaErrorInsufficientDriver", 35), ("cudaErrorNoDevice", 100)}
    print(f"\nreal libcudart, no GPU: {failed.value}")
    # CUDA 12's struct, through the _v2 entry point
    with pytest.raises(CudaError) as failed:
        real.device_name()
    assert one_line_error(str(failed.value), "libcudart.so.12", REAL, "cudaGetDeviceProperties_v2") == (name, number)


def test_real_runtime_is_found_through_ld_library_path() -> None:
    found = run_python(
        "rt = cudart.runtime()\nprint(json.dumps([cudart.find_library(), rt.library, rt.soname, rt.version()]))",
        LD_LIBRARY_PATH=str(REAL.parent),
    )
    assert found[:3] == ["libcudart.so.12", str(REAL), "libcudart.so.12"]
    assert found[3].startswith("12.")


@pytest.mark.parametrize("layout", ["lib64", "targets/aarch64-linux/lib"])
def test_real_runtime_is_found_through_cuda_home(tmp_path: Path, layout: str) -> None:
    """Both of JetPack's layouts: lib64 (a link to targets/<arch>/lib there) and targets/<arch>/lib itself."""
    library = tmp_path / "cuda" / layout / "libcudart.so.12"
    library.parent.mkdir(parents=True)
    library.symlink_to(REAL)
    found = run_python(
        "rt = cudart.runtime()\nprint(json.dumps([cudart.find_library(), rt.library, rt.version()]))",
        CUDA_HOME=str(tmp_path / "cuda"),
    )
    assert found[:2] == [str(library), str(library)]
    assert found[2].startswith("12.")


# the C stand-in ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cuda")
    build(home)
    return home


@pytest.fixture(scope="module")
def fake_lib(fake_home: Path) -> Path:
    return fake_home / "lib64" / "libcudart.so.12"


@pytest.fixture(scope="module")
def fake(fake_lib: Path) -> CudaRuntime:
    return CudaRuntime(str(fake_lib))


def floats(ptr: int, n: int) -> np.ndarray:
    """A NumPy view of ``n`` float32 at ``ptr`` (pinned host memory)."""
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n,))


def test_round_trip_on_a_stream_lands_only_at_synchronize(fake: CudaRuntime) -> None:
    n = 4096
    nbytes = n * 4
    host_in, host_out = fake.malloc_host(nbytes), fake.malloc_host(nbytes)
    device = fake.malloc(nbytes)
    stream = fake.stream_create()
    source, result = floats(host_in, n), floats(host_out, n)
    source[:] = np.arange(n, dtype=np.float32) * 0.5
    result[:] = -1.0
    fake.memcpy_async(device, host_in, nbytes, HOST_TO_DEVICE, stream)
    fake.memcpy_async(host_out, device, nbytes, DEVICE_TO_HOST, stream)
    assert (result == -1.0).all(), "the copies are queued on the stream: nothing lands before synchronize"
    fake.stream_synchronize(stream)
    np.testing.assert_array_equal(result, source)
    fake.stream_destroy(stream)
    fake.free(device)
    fake.free_host(host_in)
    fake.free_host(host_out)


def test_synchronous_copies_from_pageable_memory(fake: CudaRuntime) -> None:
    data = bytes(range(256)) * 4
    source, back = ctypes.create_string_buffer(data, len(data)), ctypes.create_string_buffer(len(data))
    device = fake.malloc(len(data))
    fake.memcpy(device, ctypes.addressof(source), len(data), HOST_TO_DEVICE)
    fake.memcpy(ctypes.addressof(back), device, len(data), DEVICE_TO_HOST)
    assert back.raw == data
    fake.free(device)


def test_device_and_library_as_the_stand_in_reports_them(fake: CudaRuntime, fake_lib: Path) -> None:
    assert (fake.library, fake.soname) == (str(fake_lib), "libcudart.so.12")
    assert (fake.version(), fake.device_count(), fake.device_name()) == ("12.4", 1, "Fake GPU (CPU)")
    with pytest.raises(CudaError) as failed:
        fake.device_name(1)
    assert one_line_error(str(failed.value), "libcudart.so.12", fake_lib, "cudaGetDeviceProperties_v2") == (
        "cudaErrorInvalidDevice",
        101,
    )


def test_the_stand_in_writes_no_more_of_the_properties_than_the_name(fake_lib: Path) -> None:
    """Where `name` ends (256 bytes), every CUDA release's struct goes on differently: nothing past it is written."""
    lib = ctypes.CDLL(str(fake_lib))
    props = ctypes.create_string_buffer(b"\xee" * 8192, 8192)
    assert lib.cudaGetDeviceProperties_v2(props, 0) == 0
    assert props.raw[:15] == b"Fake GPU (CPU)\0"
    assert props.raw[256:] == b"\xee" * (8192 - 256)


def test_double_free_and_the_wrong_allocator_raise(fake: CudaRuntime, fake_lib: Path) -> None:
    device, pinned, stream = fake.malloc(64), fake.malloc_host(64), fake.stream_create()
    fake.free(device)
    with pytest.raises(CudaError) as failed:
        fake.free(device)
    assert one_line_error(str(failed.value), "libcudart.so.12", fake_lib, "cudaFree") == ("cudaErrorInvalidValue", 1)
    with pytest.raises(CudaError, match=r"cudaFree failed: cudaErrorInvalidValue \(1\): invalid argument"):
        fake.free(pinned)
    fake.free_host(pinned)
    with pytest.raises(CudaError, match=r"cudaFreeHost failed: cudaErrorInvalidValue \(1\)"):
        fake.free_host(pinned)
    fake.stream_destroy(stream)
    with pytest.raises(CudaError, match=r"cudaStreamDestroy failed: cudaErrorInvalidResourceHandle \(400\)"):
        fake.stream_destroy(stream)


@pytest.mark.parametrize(
    ("soname", "version", "release", "properties"),
    [
        ("libcudart.so.10.2", 10020, "10.2", "cudaGetDeviceProperties"),
        ("libcudart.so.11.0", 11040, "11.4", "cudaGetDeviceProperties"),
        ("libcudart.so.12", 12040, "12.4", "cudaGetDeviceProperties_v2"),
    ],
)
def test_each_jetpack_runtime_through_cuda_home(
    tmp_path: Path, soname: str, version: int, release: str, properties: str
) -> None:
    """JetPack 4, 5 and 6's runtimes: the release as cudaRuntimeGetVersion says it, the properties' entry point
    of each (the failure names the one called), and runtime() loaded once when threads race for it."""
    library = build(tmp_path / "cuda", soname, version)
    out = run_python(
        "import threading\n"
        "found, barrier = [], threading.Barrier(8)\n"
        "def first():\n"
        "    barrier.wait()\n"
        "    found.append(cudart.runtime())\n"
        "threads = [threading.Thread(target=first) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "rt = found[0]\n"
        "out = {'instances': len({id(r) for r in found}), 'library': rt.library, 'soname': rt.soname,\n"
        "       'version': rt.version(), 'name': rt.device_name()}\n"
        "os.environ['FAKE_CUDART_FAIL'] = 'cudaGetDeviceProperties,cudaGetDeviceProperties_v2'\n"
        "out['failed'] = attempt(rt.device_name)\n"
        "print(json.dumps(out))",
        CUDA_HOME=str(tmp_path / "cuda"),
    )
    failed = out.pop("failed")["CudaError"]
    assert out == {
        "instances": 1,
        "library": str(library),
        "soname": soname,
        "version": release,
        "name": "Fake GPU (CPU)",
    }
    assert one_line_error(failed, soname, library, properties) == ("cudaErrorMemoryAllocation", 2)


def test_a_failing_malloc_is_one_line_naming_cudaErrorMemoryAllocation(fake_home: Path, fake_lib: Path) -> None:
    out = run_python(
        "rt = cudart.runtime()\n"
        "host = rt.malloc_host(1024)\n"
        "out = {'malloc': attempt(lambda: rt.malloc(1024)), 'host_freed': attempt(lambda: rt.free_host(host))}\n"
        "print(json.dumps(out))",
        CUDA_HOME=str(fake_home),
        FAKE_CUDART_FAIL="cudaMalloc",
    )
    assert out["host_freed"] == {"value": None}, "only cudaMalloc fails"
    assert out["malloc"] == {
        "CudaError": f"CUDA runtime libcudart.so.12 ({fake_lib}): cudaMalloc failed: cudaErrorMemoryAllocation (2): "
        "out of memory"
    }


def test_no_device_is_cudaErrorNoDevice_from_each_call_that_needs_one(fake_home: Path, fake_lib: Path) -> None:
    out = run_python(
        "rt = cudart.runtime()\n"
        "calls = {'version': rt.version, 'device_count': rt.device_count, 'device_name': rt.device_name,\n"
        "         'malloc': lambda: rt.malloc(64), 'malloc_host': lambda: rt.malloc_host(64),\n"
        "         'stream_create': rt.stream_create}\n"
        "print(json.dumps({name: attempt(call) for name, call in calls.items()}))",
        CUDA_HOME=str(fake_home),
        FAKE_CUDART_NO_DEVICE="1",
    )
    assert out.pop("version") == {"value": "12.4"}, "the runtime's own version needs no device"
    calls = {
        "device_count": "cudaGetDeviceCount",
        "device_name": "cudaGetDeviceProperties_v2",
        "malloc": "cudaMalloc",
        "malloc_host": "cudaMallocHost",
        "stream_create": "cudaStreamCreate",
    }
    for name, call in calls.items():
        assert one_line_error(out[name]["CudaError"], "libcudart.so.12", fake_lib, call) == ("cudaErrorNoDevice", 100)


ROUND_TRIP = """
rt = cudart.runtime()
nbytes = 1 << 16
host_in, host_out, device = rt.malloc_host(nbytes), rt.malloc_host(nbytes), rt.malloc(nbytes)
stream = rt.stream_create()
rt.memcpy_async(device, host_in, nbytes, cudart.HOST_TO_DEVICE, stream)
rt.memcpy_async(host_out, device, nbytes, cudart.DEVICE_TO_HOST, stream)
rt.stream_synchronize(stream)
"""
RELEASE_ALL = """
rt.stream_destroy(stream)
rt.free(device)
rt.free_host(host_in)
rt.free_host(host_out)
"""


def test_leak_report_at_exit(tmp_path: Path, fake_home: Path) -> None:
    """Nothing live once everything is released; and the report does see what a run leaves behind."""
    report = tmp_path / "leaks.jsonl"
    run_python(ROUND_TRIP + RELEASE_ALL + "print('{}')", CUDA_HOME=str(fake_home), FAKE_CUDART_REPORT=str(report))
    run_python(
        ROUND_TRIP + "rt.free_host(host_in)\nprint('{}')", CUDA_HOME=str(fake_home), FAKE_CUDART_REPORT=str(report)
    )
    released, leaked = (json.loads(line) for line in report.read_text().splitlines())
    assert released == {"version": 12040, "device_allocations": 0, "host_allocations": 0, "streams": 0}
    assert leaked == {"version": 12040, "device_allocations": 1, "host_allocations": 1, "streams": 1}


# nothing to find ---------------------------------------------------------------------------------------------------
#: in a mount namespace of its own: this host's CUDA toolkits (/usr/local/cuda*) out of sight and the ld cache
#: rebuilt without them, so that neither the loader nor the glob can find a libcudart; then "$@"
HIDE_HOST_CUDA = """
set -e
PATH="$PATH:/usr/sbin:/sbin"
for toolkit in /usr/local/cuda*; do
    if [ -d "$toolkit" ]; then mount -t tmpfs none "$toolkit"; fi
done
ldconfig -X -C "$CACHE"
mount --bind "$CACHE" /etc/ld.so.cache
exec "$@"
"""


def without_host_cuda(tmp_path: Path) -> list[str]:
    """The command prefix that runs a command where this host's own CUDA runtime cannot be found."""
    unshare = ["unshare", "--mount"] + (["--map-root-user"] if os.geteuid() != 0 else [])
    prefix = [*unshare, "env", f"CACHE={tmp_path / 'ld.so.cache'}", "sh", "-c", HIDE_HOST_CUDA, "sh"]
    if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
        return prefix
    if not (ctypes.util.find_library("cudart") or list(Path("/usr/local").glob("cuda*/lib64/libcudart.so*"))):
        return []  # nothing to hide
    pytest.skip("this host has a CUDA runtime and no mount namespace (unshare --mount) to hide it in")


def test_nothing_to_find_is_one_line_naming_where_it_looked(tmp_path: Path) -> None:
    empty = tmp_path / "empty-cuda"
    empty.mkdir()
    code = (
        PRELUDE + "try:\n"
        "    print(json.dumps({'found': cudart.find_library()}))\n"
        "except cudart.BackendUnavailable as exc:\n"
        "    print(json.dumps({'BackendUnavailable': str(exc)}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CUDART_")}
    env.update(CUDA_HOME=str(empty), LD_LIBRARY_PATH="", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [*without_host_cuda(tmp_path), sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    message = json.loads(done.stdout.splitlines()[-1])["BackendUnavailable"]
    assert "\n" not in message
    looked = (
        f"$CUDA_HOME={empty} (lib64, lib, targets/*/lib)",
        "LD_LIBRARY_PATH empty; ld.so.cache",
        "/usr/local/cuda*/lib64",
        "libcudart.so.12, libcudart.so.11.0, libcudart.so.10.2",
        "cuda-cudart",
    )
    for where in looked:
        assert where in message, message
    print(f"\nnothing to find: {message}")

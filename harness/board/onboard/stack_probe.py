"""What a board offers the module, printed as one JSON object: run by the board's own python3 (JetPack 4 has 3.6).

Python, CPU and glibc decide which wheels fit. TensorRT's bindings and the CUDA runtime decide whether the TensorRT
backend can run; libcudart is found by the module's own finder (module/backends/libcudart.py), which
`harness.board.stack` sends ahead of this file. The system OpenCV spares a wheel; venv support decides whether the
native deploy can make its virtualenv. Each probe is caught: a broken TensorRT install is reported with its error,
never a traceback.
"""

import ctypes
import importlib.util
import json
import os
import platform
import sys


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _module_version(name):
    """(version, None) when `name` imports, (None, None) when it is absent, (None, error) when it is broken."""
    if importlib.util.find_spec(name) is None:
        return None, None
    try:
        module = __import__(name)
        return str(getattr(module, "__version__", "unknown")), None
    except Exception as exc:  # a half-installed TensorRT raises OSError or ImportError from its libraries
        return None, _first_line(exc)


def _cudart():
    """The libcudart the module's binding would load (`locate`, module/backends/libcudart.py, is sent ahead of
    this file), with its version: cudaRuntimeGetVersion needs no GPU and no driver."""
    found = locate()  # noqa: F821 - defined by the file sent first
    if found is None:
        return None
    try:
        library = ctypes.CDLL(found)
    except OSError:
        return None
    number = ctypes.c_int(0)
    status = library.cudaRuntimeGetVersion(ctypes.byref(number))
    version = f"{number.value // 1000}.{number.value % 1000 // 10}" if status == 0 else None
    return {"soname": os.path.basename(found), "path": found if os.sep in found else None, "version": version}


def _glibc():
    """The system's glibc: before Python 3.8, platform.libc_ver() reports the newest symbol the python binary uses."""
    if "CS_GNU_LIBC_VERSION" in getattr(os, "confstr_names", {}):
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
        if name == "glibc":
            return version
    libc, version = platform.libc_ver()
    return version if libc == "glibc" else None


def main():
    tensorrt, tensorrt_error = _module_version("tensorrt")
    opencv, _ = _module_version("cv2")  # a broken cv2 counts as none: the deploy installs the wheel
    facts = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "glibc": _glibc(),
        "tensorrt": tensorrt,
        "tensorrt_error": tensorrt_error,
        "cudart": _cudart(),
        "opencv": opencv,
        "venv": importlib.util.find_spec("ensurepip") is not None and importlib.util.find_spec("venv") is not None,
        "trtexec": os.path.isfile("/usr/src/tensorrt/bin/trtexec"),
    }
    sys.stdout.write(json.dumps(facts) + "\n")


if __name__ == "__main__":
    main()

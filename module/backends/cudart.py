"""The CUDA runtime through the board's own libcudart, by ctypes.

JetPack 4/5/6 ship libcudart (CUDA 10.2, 11.x, 12.x) but not cuda-python, so the TensorRT backend calls the
runtime API directly. Runs on the board's python3, 3.6 included: typing-module annotations, no dataclasses.
"""

import ctypes
import ctypes.util
import os
import threading
from typing import Optional, Tuple

from ..errors import BackendUnavailable, ModuleError
from .libcudart import LOCAL_CUDA, SONAMES, locate

HOST_TO_DEVICE = 1  # cudaMemcpyHostToDevice
DEVICE_TO_HOST = 2  # cudaMemcpyDeviceToHost
#: cudaDeviceProp grew across releases (about 700 bytes in 10.2, over 1 KiB in 12): a zeroed buffer big enough
#: for any of them, of which we read only `name`, its first field, char[256]
_PROPS_BYTES = 8192
_NAME_BYTES = 256

_INT_P, _PTR_P = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_void_p)
_PTR, _SIZE = ctypes.c_void_p, ctypes.c_size_t
#: the runtime functions called here → argtypes (all return cudaError_t, an int enum)
_SIGNATURES = {
    "cudaRuntimeGetVersion": (_INT_P,),
    "cudaGetDeviceCount": (_INT_P,),
    "cudaGetDeviceProperties": (ctypes.c_char_p, ctypes.c_int),
    "cudaGetDeviceProperties_v2": (ctypes.c_char_p, ctypes.c_int),  # CUDA 12's struct; the plain name keeps 11's
    "cudaMalloc": (_PTR_P, _SIZE),
    "cudaFree": (_PTR,),
    "cudaMallocHost": (_PTR_P, _SIZE),
    "cudaFreeHost": (_PTR,),
    "cudaMemcpy": (_PTR, _PTR, _SIZE, ctypes.c_int),
    "cudaMemcpyAsync": (_PTR, _PTR, _SIZE, ctypes.c_int, _PTR),
    "cudaStreamCreate": (_PTR_P,),
    "cudaStreamSynchronize": (_PTR,),
    "cudaStreamDestroy": (_PTR,),
}


class CudaError(ModuleError):
    """A CUDA runtime call failed; the message names the library, the call and CUDA's own name for the error."""


def _ld_library_path() -> str:
    """LD_LIBRARY_PATH as the loader read it when the process started (cv2, for one, edits os.environ's later)."""
    try:
        with open("/proc/self/environ", "rb") as environ:
            for entry in environ.read().split(b"\0"):
                if entry.startswith(b"LD_LIBRARY_PATH="):
                    return entry[len(b"LD_LIBRARY_PATH=") :].decode("utf-8", "replace")
        return ""
    except OSError:
        return os.environ.get("LD_LIBRARY_PATH", "")


def find_library() -> str:
    """Where the CUDA runtime is, looked for as CUDA's own tools do: $CUDA_HOME, the dynamic loader, /usr/local."""
    found = locate()
    if found:
        return found
    home = os.environ.get("CUDA_HOME")
    where = f"$CUDA_HOME={home} (lib64, lib, targets/*/lib)" if home else "$CUDA_HOME (not set)"
    ld_path = _ld_library_path()
    ld_path = f"LD_LIBRARY_PATH={ld_path}" if ld_path else "LD_LIBRARY_PATH empty"
    raise BackendUnavailable(
        f"no CUDA runtime ({', '.join(SONAMES)}) in {where}, on the dynamic loader's path ({ld_path}; ld.so.cache) "
        f"or in {LOCAL_CUDA}/lib64: install JetPack's CUDA runtime (cuda-cudart-<major>-<minor>, part of "
        "nvidia-jetpack) or set CUDA_HOME to a CUDA install"
    )


class _LinkMap(ctypes.Structure):  # the head of glibc's struct link_map (<link.h>)
    _fields_ = [("l_addr", ctypes.c_size_t), ("l_name", ctypes.c_char_p), ("l_ld", ctypes.c_void_p)]


class _Dyn(ctypes.Structure):  # ElfW(Dyn): two machine words on 32- and 64-bit alike
    _fields_ = [("d_tag", ctypes.c_ssize_t), ("d_val", ctypes.c_size_t)]


def _loaded_as(handle: int) -> Tuple[Optional[str], Optional[str]]:
    """(file the loader opened, its DT_SONAME) for a dlopen handle, by dlinfo(RTLD_DI_LINKMAP); None where unknown."""
    try:
        dlinfo = ctypes.CDLL("libdl.so.2").dlinfo  # glibc < 2.34 keeps it there; later ones forward it to libc
        dlinfo.argtypes, dlinfo.restype = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p), ctypes.c_int
        lm = ctypes.c_void_p()
        if dlinfo(handle, 2, ctypes.byref(lm)) != 0 or not lm.value:
            return None, None
    except (OSError, AttributeError):
        return None, None
    link = _LinkMap.from_address(lm.value)
    path = os.fsdecode(link.l_name) if link.l_name else None
    strtab = soname = None
    dyn = ctypes.cast(link.l_ld, ctypes.POINTER(_Dyn))
    for i in range(1024):
        tag, val = dyn[i].d_tag, dyn[i].d_val
        if tag == 0:  # DT_NULL
            break
        if tag == 5:  # DT_STRTAB: relocated in place by glibc on most machines, an offset on the others
            strtab = val if val >= link.l_addr else val + link.l_addr
        elif tag == 14:  # DT_SONAME
            soname = val
    if strtab is None or soname is None:
        return path, None
    return path, ctypes.string_at(strtab + soname).decode()


class CudaRuntime:
    """One loaded libcudart; every call that fails raises CudaError."""

    #: the file the loader opened (or the path given, where that cannot be known), and its soname
    library: str
    soname: str

    def __init__(self, path: str) -> None:
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as exc:
            raise BackendUnavailable(f"CUDA runtime {path} cannot be loaded: {exc}") from None
        for name, argtypes in _SIGNATURES.items():
            if hasattr(self._lib, name):  # cudaGetDeviceProperties_v2 is CUDA 12's only
                function = getattr(self._lib, name)
                function.argtypes, function.restype = argtypes, ctypes.c_int
        for name in ("cudaGetErrorName", "cudaGetErrorString"):
            function = getattr(self._lib, name)
            function.argtypes, function.restype = (ctypes.c_int,), ctypes.c_char_p
        loaded, soname = _loaded_as(self._lib._handle)
        self.library = loaded or path
        self.soname = soname or os.path.basename(path)

    def _call(self, name: str, *args: object) -> None:
        code = getattr(self._lib, name)(*args)
        if code != 0:
            what = self._lib.cudaGetErrorName(code) or b"unknown error"
            text = self._lib.cudaGetErrorString(code) or b""
            raise CudaError(
                f"CUDA runtime {self.soname} ({self.library}): {name} failed: {what.decode()} ({code}): {text.decode()}"
            )

    def version(self) -> str:
        """The runtime's CUDA release, e.g. '12.4' (cudaRuntimeGetVersion's 12040)."""
        value = ctypes.c_int()
        self._call("cudaRuntimeGetVersion", ctypes.byref(value))
        return f"{value.value // 1000}.{value.value % 1000 // 10}"

    def device_count(self) -> int:
        value = ctypes.c_int()
        self._call("cudaGetDeviceCount", ctypes.byref(value))
        return value.value

    def device_name(self, device: int = 0) -> str:
        props = ctypes.create_string_buffer(_PROPS_BYTES)
        v2 = "cudaGetDeviceProperties_v2"
        self._call(v2 if hasattr(self._lib, v2) else "cudaGetDeviceProperties", props, device)
        return props.raw[:_NAME_BYTES].split(b"\0", 1)[0].decode("utf-8", "replace")

    def _allocate(self, name: str, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._call(name, ctypes.byref(ptr), nbytes)
        return ptr.value or 0

    def malloc(self, nbytes: int) -> int:
        return self._allocate("cudaMalloc", nbytes)

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def malloc_host(self, nbytes: int) -> int:
        """Page-locked host memory: the only kind cudaMemcpyAsync copies without blocking."""
        return self._allocate("cudaMallocHost", nbytes)

    def free_host(self, ptr: int) -> None:
        self._call("cudaFreeHost", ptr)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        self._call("cudaMemcpy", dst, src, nbytes, kind)

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        """Queued on ``stream``: neither side may be read or reused before stream_synchronize."""
        self._call("cudaMemcpyAsync", dst, src, nbytes, kind, stream)

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self._call("cudaStreamCreate", ctypes.byref(stream))
        return stream.value or 0

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", stream)

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", stream)


_lock = threading.Lock()
_runtime = None  # type: Optional[CudaRuntime]


def runtime() -> CudaRuntime:
    """This process's CUDA runtime, loaded once (via find_library) by whichever thread asks first."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = CudaRuntime(find_library())
        return _runtime

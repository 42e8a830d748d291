"""cuda-python's runtime module, as far as the module uses it; device memory is host memory here."""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace

SUCCESS = 0
_alive: dict[int, ctypes.Array] = {}


class cudaMemcpyKind(enum.IntEnum):  # cuda-python's names
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


def _allocate(nbytes: int) -> tuple[int, int]:
    buffer = (ctypes.c_byte * nbytes)()
    address = ctypes.addressof(buffer)
    _alive[address] = buffer
    return SUCCESS, address


cudaMallocHost = _allocate
cudaMalloc = _allocate


def _free(address: int) -> tuple[int]:
    _alive.pop(int(address))  # a double free or a stray pointer raises KeyError, as it should fail a test
    return (SUCCESS,)


cudaFree = _free
cudaFreeHost = _free


def cudaMemcpy(dst: int, src: int, nbytes: int, kind: cudaMemcpyKind) -> tuple[int]:
    ctypes.memmove(int(dst), int(src), int(nbytes))
    return (SUCCESS,)


def cudaMemcpyAsync(dst: int, src: int, nbytes: int, kind: cudaMemcpyKind, stream: int) -> tuple[int]:
    return cudaMemcpy(dst, src, nbytes, kind)


def cudaStreamCreate() -> tuple[int, int]:
    return SUCCESS, 1


def cudaStreamSynchronize(stream: int) -> tuple[int]:
    return (SUCCESS,)


def cudaStreamDestroy(stream: int) -> tuple[int]:
    return (SUCCESS,)


def cudaGetDeviceProperties(device: int) -> tuple[int, SimpleNamespace]:
    return SUCCESS, SimpleNamespace(name=b"Fake GPU (CPU)\x00\x00")

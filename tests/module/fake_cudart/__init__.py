"""Builds the C stand-in for libcudart (cudart.c, see README.md) into a CUDA_HOME-shaped folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("cudart.c")
#: compiled once per (source, soname, version) for every test session of this user, then copied where asked
CACHE = Path(tempfile.gettempdir()) / f"fake-cudart-{os.getuid()}"


def _compile(output: Path, soname: str, version: int) -> None:
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(
            f"no C compiler '{compiler}' on PATH: the fake libcudart is built from {SOURCE} at test "
            "time (apt-get install gcc)"
        )
    partial = output.with_name(f"{output.name}.{os.getpid()}.tmp")
    command = [compiler, "-shared", "-fPIC", "-O1", "-pthread", f"-Wl,-soname,{soname}",
               f"-DFAKE_CUDART_VERSION={version}", "-o", str(partial), str(SOURCE)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"building the fake libcudart failed ({' '.join(command)}):\n{result.stderr}")
    os.replace(partial, output)  # atomic: parallel test workers never load a half-written library


def build(cuda_home: Path, soname: str = "libcudart.so.12", version: int = 12040) -> Path:
    """Compile cudart.c as ``soname`` reporting ``version`` (cudaRuntimeGetVersion's number, e.g. 10020 for 10.2)
    into ``cuda_home/lib64/soname`` and return that path; point CUDA_HOME at ``cuda_home`` to have it found."""
    # the source, this file (the compiler's flags) and the compiler name: any change builds anew
    recipe = SOURCE.read_bytes() + Path(__file__).read_bytes() + os.environ.get("CC", "cc").encode()
    digest = hashlib.sha256(recipe).hexdigest()[:16]
    cached = CACHE / f"{digest}-{version}-{soname}"
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        _compile(cached, soname, version)
    target = Path(cuda_home) / "lib64" / soname
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    return target

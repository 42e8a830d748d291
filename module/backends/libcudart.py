"""Where the board's CUDA runtime (libcudart) is, found as CUDA's own tools find it.

Standard library only, Python 3.6: the module's CUDA binding (cudart.py) loads what this finds, and the harness's
stack probe (harness/board/onboard/stack_probe.py), which runs on the board's bare python3 before the module is
there, is sent this file ahead of it, so both look in the same places in the same order.
"""

import ctypes
import ctypes.util
import glob
import os
import re
from typing import List, Optional, Tuple

#: newest first; "libcudart.so" (the toolkit's development link) last
SONAMES = ("libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2", "libcudart.so")
#: where CUDA toolkits install when CUDA_HOME is not set (JetPack: /usr/local/cuda-10.2, -11.4, -12.6)
LOCAL_CUDA = "/usr/local/cuda*"


def _version_key(path: str) -> Tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", os.path.basename(os.path.realpath(path))))


def _in_dirs(dirs: List[str]) -> Optional[str]:
    """The first libcudart in ``dirs``: a name of SONAMES, else the newest libcudart.so.N there."""
    for folder in dirs:
        for name in SONAMES:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
        others = sorted(glob.glob(os.path.join(folder, "libcudart.so.[0-9]*")), key=_version_key, reverse=True)
        if others:
            return others[0]
    return None


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def locate() -> Optional[str]:
    """Where the CUDA runtime is, looked for as CUDA's own tools do: $CUDA_HOME, the dynamic loader, /usr/local;
    None where there is none."""
    home = os.environ.get("CUDA_HOME")
    if home:
        targets = sorted(glob.glob(os.path.join(home, "targets", "*", "lib")))
        found = _in_dirs([os.path.join(home, "lib64"), os.path.join(home, "lib"), *targets])
        if found:
            return found
    for name in SONAMES:  # LD_LIBRARY_PATH, then the ld cache
        if _loadable(name):
            return name
    other = ctypes.util.find_library("cudart")  # a soname the cache knows beyond ours (JetPack 4.2's 10.0, 13)
    if other and _loadable(other):
        return other
    toolkits = sorted({os.path.realpath(d) for d in glob.glob(LOCAL_CUDA)}, key=_version_key, reverse=True)
    found = _in_dirs([os.path.join(d, "lib64") for d in toolkits])
    if found:
        return found
    return None

"""Which host CPUs the board's online cores run on: the mode's share of the CPUs the container booted with.

A virtual board has fewer host CPUs than the Jetson has cores; a mode with half the cores online gets half the
container's CPUs (at least one). Every thread on the board is pinned there: by nvpmodel when the mode changes,
and by the model daemon every step for any thread that runs elsewhere, `docker exec` included, as a real
board's offline cores are off for every process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

from .spec import RUN_DIR, read

BOOT_CPUS = RUN_DIR + "/boot_cpus"


def boot_cpus() -> list[int]:
    text = read(BOOT_CPUS)
    return [int(c) for c in text.split(",") if c] or sorted(os.sched_getaffinity(0))


def host_cpus_for(spec: dict, online: int) -> set[int]:
    cpus = boot_cpus()
    return set(cpus[:max(1, min(len(cpus), math.ceil(online * len(cpus) / spec["cpu_cores"])))])


def pin(tids: list[int], cpus: set[int]) -> None:
    """Pin the threads that run elsewhere (runc resets the affinity of a `docker exec` process after it starts,
    so a thread pinned once is not pinned for good: the daemon calls this every step)."""
    for tid in tids:
        try:
            if os.sched_getaffinity(tid) != cpus:
                os.sched_setaffinity(tid, cpus)
        except OSError:
            continue  # exited meanwhile


def threads() -> Iterator[tuple[int, int]]:
    """(pid, tid) of every thread in the board's PID namespace."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue  # exited meanwhile
            yield from ((int(pid), int(tid)) for tid in tids)

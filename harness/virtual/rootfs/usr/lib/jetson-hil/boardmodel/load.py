"""Per-core load from the threads actually running on the board, and the GPU's work.

A virtual board has fewer host CPUs than the Jetson has cores, so the kernel cannot say which emulated core a
thread ran on. The model schedules instead: every step it measures each thread's CPU time (/proc/PID/task/TID/stat),
keeps a thread on the core it had while that core has room, and puts a new or displaced thread on the least
loaded online core, as the kernel's load balancer would. One busy thread therefore shows as one busy core.
An emulated core is assumed to do what one host CPU does (listed in /etc/jetson-hil/modeled).

The GPU has no stand-in on the host but the work meant for it: the threads of the processes the profile names
as the GPU stand-in (the detection module, whose inference a real board runs on the GPU) count as GPU load, as
a share of the host CPUs the board has, and not as CPU load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .cpus import threads

TICKS = os.sysconf("SC_CLK_TCK")


def _thread_times() -> dict[tuple[int, int], float]:
    """CPU seconds (user + system) of every thread in the board's PID namespace, by (pid, tid)."""
    times = {}
    for pid, tid in threads():
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        times[(pid, tid)] = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return times


def _is_stand_in(pid: int, argv_marks: list[list[str]]) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(any(argv[i:i + len(mark)] == mark for i in range(len(argv))) for mark in argv_marks)


@dataclass
class Scheduler:
    """Which emulated core each thread is on, and what each core and the GPU did in the last step."""

    cores: int
    gpu_capacity: float  # host CPUs' worth of work that is 100 % GPU load
    stand_in: list[list[str]]
    skip_pid: int = field(default_factory=os.getpid)  # the model itself is the hardware, not load on it
    _last: dict[tuple[int, int], float] = field(default_factory=dict)
    _core_of: dict[tuple[int, int], int] = field(default_factory=dict)
    _gpu_pids: dict[int, bool] = field(default_factory=dict)

    def step(self, dt: float, online: int) -> tuple[list[float], float, list[int]]:
        """Per-core load (0..1, offline cores 0) and GPU load (0..1) over the last `dt` seconds, and every thread
        on the board."""
        now = _thread_times()
        usage: dict[tuple[int, int], float] = {}
        for key, seconds in now.items():
            if key[0] == self.skip_pid:
                continue
            used = max(seconds - self._last.get(key, seconds), 0.0)
            if used > 0:
                usage[key] = min(used / dt, 1.0)
        self._last = now
        live_pids = {pid for pid, _ in now}
        self._gpu_pids = {pid: v for pid, v in self._gpu_pids.items() if pid in live_pids}
        self._core_of = {key: core for key, core in self._core_of.items() if key in now and core < online}
        loads = [0.0] * self.cores
        gpu = 0.0
        for key, share in sorted(usage.items(), key=lambda item: -item[1]):
            pid = key[0]
            if pid not in self._gpu_pids:
                self._gpu_pids[pid] = _is_stand_in(pid, self.stand_in)
            if self._gpu_pids[pid]:
                gpu += share
                continue
            core = self._core_of.get(key)
            if core is None or loads[core] + share > 1.0:
                core = min(range(online), key=lambda c: loads[c])
                self._core_of[key] = core
            loads[core] = min(loads[core] + share, 1.0)
        return loads, min(gpu / self.gpu_capacity, 1.0), [tid for _, tid in now]

    @property
    def gpu_processes(self) -> int:
        """The GPU stand-in's processes alive at the last step (each holds GPU memory on a real board until it ends,
        busy or not)."""
        return sum(self._gpu_pids.values())

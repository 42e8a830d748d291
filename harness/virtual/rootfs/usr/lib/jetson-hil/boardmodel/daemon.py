"""Steps the board model and publishes its state: STATE_FILE for the emulated tools, sysfs (FAKE_SYS) for jetson-stats.

Started at boot by the board's entrypoint, as the hardware is there from power-on. The state carries counters
the way the kernel does (busy seconds per core and for the GPU since boot) so that each reader computes load
over its own interval, and instantaneous clocks, rails and temperatures, so that tegrastats, jetson_clocks --show
and anything else on the board agree on one board.
"""

from __future__ import annotations

import json
import os
import time

from . import spec as board_spec
from .clocks import clocks
from .cpus import host_cpus_for, pin
from .load import Scheduler
from .memory import container_used_mb, memory_mb
from .power import Work, rails_mw, total_mw
from .state import STATE_FILE
from .sysfs import FakeSys
from .thermal import Thermal

STEP_S = 0.25


def idle_total_mw(spec: dict) -> float:
    """The idle capture's total: the thermal model's zero."""
    rails = {name: rail["idle_mw"] for name, rail in spec["model"]["rails"].items()}
    return total_mw(spec, rails)


def run() -> None:
    spec = board_spec.board()
    calibration = spec["model"]
    scheduler = Scheduler(spec["cpu_cores"], min(spec["virtual"]["cpus"], len(os.sched_getaffinity(0))),
                          calibration["gpu_stand_in"])
    thermal = Thermal(calibration, idle_total_mw(spec))
    fake_sys = FakeSys(spec)
    busy = [0.0] * spec["cpu_cores"]
    gpu_busy = elapsed = 0.0
    last = time.monotonic()
    while True:
        time.sleep(STEP_S)
        now = time.monotonic()
        dt, last = max(now - last, 1e-3), now
        mode = board_spec.mode(spec)
        locked = board_spec.clocks_locked()
        loads, gpu, threads = scheduler.step(dt, mode["online_cores"])
        pin(threads, host_cpus_for(spec, mode["online_cores"]))  # `docker exec` too, not only SSH sessions
        clock = clocks(calibration, mode, loads, gpu, locked, thermal.cap_factor)
        rails = rails_mw(spec, Work.shown(loads, mode["online_cores"], gpu, clock))
        thermal.step(dt, total_mw(spec, rails))
        busy = [b + load * dt for b, load in zip(busy, loads)]
        gpu_busy += gpu * dt
        elapsed += dt
        memory = memory_mb(calibration, scheduler.gpu_processes, container_used_mb())
        state = {
            "t": now, "elapsed_s": elapsed, "mode": mode["id"], "online": mode["online_cores"], "locked": locked,
            "busy_s": busy, "gpu_busy_s": gpu_busy, "cpu_mhz": clock.cpu_mhz, "gpu_mhz": clock.gpu_mhz,
            "emc_mhz": clock.emc_mhz, "emc_util": clock.emc_util, "rails_mw": rails, "temps_c": thermal.readings,
            "throttled": thermal.throttled, "memory_mb": memory,
        }
        board_spec.write(STATE_FILE, json.dumps(state))
        fake_sys.update(state, mode, gpu)

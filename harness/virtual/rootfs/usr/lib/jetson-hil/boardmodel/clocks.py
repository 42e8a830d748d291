"""Clocks: a governor between the board's real floor and the power mode's cap; jetson_clocks pins them at the cap.

The floors and the EMC range are the real boards' (the profile cites the capture). The governor is an assumption
in the way of schedutil and devfreq: the clock follows the busiest core (the GPU's load) with headroom, at once
upwards and downwards, as both do within a few of their 4-10 ms windows, far below tegrastats' interval.
A thermal throttle lowers the cap (see thermal).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADROOM = 1.25  # schedutil asks for 1.25 x the utilisation (kernel/sched/cpufreq_schedutil.c)


@dataclass(frozen=True)
class Clocks:
    cpu_mhz: float
    gpu_mhz: float
    emc_mhz: float
    emc_util: float  # share of the memory controller's bandwidth in use, 0..1


def _governed(floor: float, cap: float, load: float) -> float:
    return min(cap, floor + (cap - floor) * min(1.0, HEADROOM * load))


def clocks(calibration: dict, mode: dict, cpu_loads: list[float], gpu_load: float, locked: bool,
           throttle: float) -> Clocks:
    """`throttle` is the factor (0..1] the thermal model leaves of the mode's caps."""
    cpu_cap = max(calibration["cpu_floor_mhz"], mode["cpu_max_mhz"] * throttle)
    gpu_cap = max(calibration["gpu_floor_mhz"], mode["gpu_max_mhz"] * throttle)
    emc_min, emc_max = calibration["emc_mhz"]
    busiest = max(cpu_loads, default=0.0)
    mean = sum(cpu_loads) / max(mode["online_cores"], 1)
    # assumption: the detector streams memory about as hard as it computes; CPU work less so
    traffic = min(1.0, 0.6 * gpu_load + 0.3 * mean)
    if locked:
        return Clocks(cpu_cap, gpu_cap, emc_max, traffic)
    emc = _governed(emc_min, emc_max, traffic)
    return Clocks(_governed(calibration["cpu_floor_mhz"], cpu_cap, busiest),
                  _governed(calibration["gpu_floor_mhz"], gpu_cap, gpu_load), emc,
                  min(1.0, traffic * emc_max / emc))

"""Clocks: a governor between the board's real floor and the power mode's cap; jetson_clocks pins them at the cap.

The floors and the EMC range are the real boards' (the profile cites the capture). The governor is an assumption
in the way of schedutil and devfreq: the clock follows the busiest core (the GPU's load) with headroom, at once
upwards and downwards, as both do within a few of their 4-10 ms windows, far below tegrastats' interval.
A thermal throttle lowers the cap (see thermal).

The memory's traffic is a share of the top EMC bandwidth; the EMC governor takes the clock up far sooner than the
CPU's does, so real boards under load run the EMC near its top clock at a low to middling load (loaded captures in
tests/data/jetson/tegrastats/loaded: EMC_FREQ 1 % at 2133 MHz with twelve cores busy in agx-orin-nvdla-1.txt; with
the GPU saturated 11-15 % at 1600 MHz in nano-maxn-gpu-2.txt, 55 % at 2133 MHz in agx-xavier-maxn-gpu-1.txt: how
hard a network streams memory depends on the network, which the model does not know).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADROOM = 1.25  # schedutil asks for 1.25 x the utilisation (kernel/sched/cpufreq_schedutil.c)
#: share of the top EMC bandwidth a saturated GPU uses: between nano-maxn-gpu-2.txt's 0.13 (EMC_FREQ 11-15 % at the
#: top clock, TensorRT resnet50) and agx-xavier-maxn-gpu-1.txt's 0.55 (55 % at the top clock, darknet YOLOv3)
TRAFFIC_GPU = 0.3
#: the same for the CPU cores' mean load: agx-orin-nvdla-1.txt, 1 % at 2133 of 3199 MHz with the cores at 90-100 %
TRAFFIC_CPU = 0.01
#: assumption: the EMC governor is at its top clock once the traffic reaches this share of the top bandwidth
EMC_TOP_AT = 0.1


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
    traffic = min(1.0, TRAFFIC_GPU * gpu_load + TRAFFIC_CPU * mean)
    if locked:
        return Clocks(cpu_cap, gpu_cap, emc_max, traffic)
    emc = _governed(emc_min, emc_max, traffic / EMC_TOP_AT)
    return Clocks(_governed(calibration["cpu_floor_mhz"], cpu_cap, busiest),
                  _governed(calibration["gpu_floor_mhz"], gpu_cap, gpu_load), emc,
                  min(1.0, traffic * emc_max / emc))

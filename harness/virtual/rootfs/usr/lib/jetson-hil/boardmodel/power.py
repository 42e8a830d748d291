"""Power per rail from what the board shows: idle per rail from a real idle capture, plus the work of the CPU cores,
the GPU and the memory at the clocks tegrastats prints.

Each rail of the profile has its idle draw (a real board's idle line, every core online) and names what loads it
(cpu, gpu, memory). A unit's dynamic power is its coefficient times its load times (clock / the silicon's top
clock)^CLOCK_EXPONENT, a CMOS approximation (P ~ V^2 f, voltage rising with clock across a DVFS table); the memory's
follows the EMC clock and the share of its bandwidth in use. The coefficients are fitted per profile to real loaded
captures where there are some (the profile cites them; benchmarks/power_fidelity.py --fit). A clocked but idle unit
still switches a little (ACTIVITY_FLOOR), which is why jetson_clocks raises idle power on a real board. The input
rail (VDD_IN, POM_5V_IN) carries every sub-rail plus conversion losses; boards without one report the sum of their
rails.

Nothing caps the total: a power mode bounds power through its clock and core caps, as nvpmodel does on a real
board, whose draw under full load exceeds the watts in the mode's name (a Xavier NX in its 10 W mode draws 13-14 W
with four cores and the GPU saturated).
"""

from __future__ import annotations

from dataclasses import dataclass

from .clocks import Clocks
from .spec import hardware_max

ACTIVITY_FLOOR = 0.05  # assumption: share of full switching an idle but clocked unit keeps
REGULATOR_EFFICIENCY = 0.85  # assumption: input rail = sub-rails / efficiency
#: assumption: share of the DRAM's and controller's power at a clock that does not depend on the traffic
#: (refresh, termination, the clock tree): VDD_DDR draws watts at a few % EMC load on a real board
MEMORY_CLOCKED_SHARE = 0.5
#: of the exponents tried (1, 1.5, 2, 2.5, 3) the one that leaves the fewest loaded capture lines outside the bounds
#: of tests/test_power_under_load.py (benchmarks/power_fidelity.py): AGX Xavier's GPU rail grows 1.2 -> 17 W over
#: 522 -> 1377 MHz (agx-xavier-10w-gpu-1.txt, agx-xavier-maxn-gpu-1.txt)
CLOCK_EXPONENT = 2.5


@dataclass(frozen=True)
class Work:
    """What the board does, as tegrastats shows it: each online core's load (0..1) and clock, the GPU's load and
    the clock it shows, the memory controller's share of its bandwidth in use and its clock. Power is a function of
    this alone, so a real capture's line can be fed to the model as it is."""

    cores: tuple[tuple[float, float], ...]  # (load, MHz) per online core
    gpu_load: float
    gpu_mhz: float
    emc_util: float
    emc_mhz: float

    @classmethod
    def shown(cls, cpu_loads: list[float], online: int, gpu_load: float, clocks: Clocks) -> Work:
        """The model's own step: every online core at the governor's clock."""
        return cls(tuple((load, clocks.cpu_mhz) for load in cpu_loads[:online]), gpu_load, clocks.gpu_mhz,
                   clocks.emc_util, clocks.emc_mhz)


def dynamic_w(spec: dict, work: Work) -> dict[str, float]:
    """Each unit's power above its idle, in W."""
    calibration = spec["model"]
    cpu_top, gpu_top = hardware_max(spec, "cpu_max_mhz"), hardware_max(spec, "gpu_max_mhz")
    emc_floor, emc_top = calibration["emc_mhz"]
    return {
        "cpu": calibration["cpu_core_w"] * sum(max(load, ACTIVITY_FLOOR) * (mhz / cpu_top) ** CLOCK_EXPONENT
                                               for load, mhz in work.cores),
        "gpu": calibration["gpu_w"] * max(work.gpu_load, ACTIVITY_FLOOR) * (work.gpu_mhz / gpu_top) ** CLOCK_EXPONENT,
        # above the floor clock, where the idle capture's memory draw is the rail's idle
        "memory": calibration["memory_w"] * (work.emc_mhz - emc_floor) / (emc_top - emc_floor)
        * (MEMORY_CLOCKED_SHARE + (1.0 - MEMORY_CLOCKED_SHARE) * work.emc_util),
    }


def _idle_mw(spec: dict, online: int) -> dict[str, float]:
    """Idle per rail with `online` cores: unplugged cores save their share of the CPU rail's idle (assumption:
    half of it is theirs), and the input rail saves that too, through the regulator."""
    rails = spec["model"]["rails"]
    saved = {name: rail["idle_mw"] * 0.5 * (1.0 - online / spec["cpu_cores"]) if "cpu" in rail["loads"] else 0.0
             for name, rail in rails.items()}
    idle = {name: rail["idle_mw"] - saved[name] for name, rail in rails.items()}
    input_rail = _input_rail(spec)
    if input_rail:
        idle[input_rail] -= sum(saved.values()) / REGULATOR_EFFICIENCY
    return idle


def _input_rail(spec: dict) -> str | None:
    rule = spec["telemetry"]["total_power"]
    return rule if rule in spec["model"]["rails"] else None


def rails_mw(spec: dict, work: Work) -> dict[str, float]:
    """Every rail of the profile, in the order tegrastats prints them."""
    rails = spec["model"]["rails"]
    dynamic = dynamic_w(spec, work)
    input_rail = _input_rail(spec)
    out = _idle_mw(spec, len(work.cores))
    for name, rail in rails.items():
        if name != input_rail:
            out[name] += 1000.0 * sum(dynamic[unit] for unit in rail["loads"])
    if input_rail:
        loaded = {unit for name, rail in rails.items() if name != input_rail for unit in rail["loads"]}
        out[input_rail] += 1000.0 * sum(dynamic[unit] for unit in loaded) / REGULATOR_EFFICIENCY
    return out


def total_mw(spec: dict, rails: dict[str, float]) -> float:
    input_rail = _input_rail(spec)
    return rails[input_rail] if input_rail else sum(rails.values())

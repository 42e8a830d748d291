"""Power per rail from what loads it: idle per rail from a real capture, plus CPU, GPU and memory work.

Each rail of the profile has its idle draw (a real board's idle line) and names what loads it (cpu, gpu, memory).
Dynamic power of a unit is its full-load power at the silicon's top clock times its load times (clock / top)^2,
a CMOS approximation (voltage scales roughly with clock across a DVFS table): an assumption, as are the full-load
figures unless the profile cites a measurement. A clocked but idle unit still switches a little (ACTIVITY_FLOOR),
which is why jetson_clocks raises idle power on a real board. The input rail (VDD_IN, POM_5V_IN) carries every
sub-rail plus conversion losses; boards without one report the sum of their rails. A power mode's budget caps the
total, as the mode's clock and core limits do on a real board.
"""

from __future__ import annotations

from .clocks import Clocks
from .spec import hardware_max

ACTIVITY_FLOOR = 0.05  # assumption: share of full switching an idle but clocked unit keeps
REGULATOR_EFFICIENCY = 0.85  # assumption: input rail = sub-rails / efficiency


def _dynamic_w(calibration: dict, spec_max: dict, online: list[float], gpu_load: float,
               clocks: Clocks) -> dict[str, float]:
    cpu_scale = (clocks.cpu_mhz / spec_max["cpu"]) ** 2
    gpu_scale = (clocks.gpu_mhz / spec_max["gpu"]) ** 2
    return {
        "cpu": calibration["cpu_core_w"] * cpu_scale * sum(max(load, ACTIVITY_FLOOR) for load in online),
        "gpu": calibration["gpu_w"] * gpu_scale * max(gpu_load, ACTIVITY_FLOOR),
        "memory": calibration["memory_w"] * clocks.emc_util * clocks.emc_mhz / calibration["emc_mhz"][1],
    }


def _idle_mw(calibration: dict, spec: dict, mode: dict, rail: str) -> float:
    """Idle per rail; a mode with cores unplugged saves their share of the CPU rail's idle (assumption)."""
    idle = calibration["rails"][rail]["idle_mw"]
    if "cpu" in calibration["rails"][rail]["loads"]:
        return idle * (0.5 + 0.5 * mode["online_cores"] / spec["cpu_cores"])
    return idle


def rails_mw(spec: dict, mode: dict, cpu_loads: list[float], gpu_load: float, clocks: Clocks) -> dict[str, float]:
    """Every rail of the profile, in the order tegrastats prints them."""
    calibration = spec["model"]
    spec_max = {"cpu": hardware_max(spec, "cpu_max_mhz"), "gpu": hardware_max(spec, "gpu_max_mhz")}
    dynamic = _dynamic_w(calibration, spec_max, cpu_loads[:mode["online_cores"]], gpu_load, clocks)
    rails = calibration["rails"]
    input_rail = spec["telemetry"]["total_power"] if spec["telemetry"]["total_power"] in rails else None
    idle = {name: _idle_mw(calibration, spec, mode, name) for name in rails}
    extra = {name: 1000.0 * sum(dynamic[unit] for unit in rails[name]["loads"]) for name in rails if name != input_rail}
    total_idle = idle[input_rail] if input_rail else sum(idle.values())
    total_extra = sum(extra.values()) / (REGULATOR_EFFICIENCY if input_rail else 1.0)
    budget = mode.get("budget_w")
    scale = 1.0
    if budget and total_idle + total_extra > budget * 1000.0 and total_extra > 0:
        scale = max(budget * 1000.0 - total_idle, 0.0) / total_extra
    out = {name: idle[name] + extra.get(name, 0.0) * scale for name in rails}
    if input_rail:
        out[input_rail] = total_idle + total_extra * scale
    return out


def total_mw(spec: dict, rails: dict[str, float]) -> float:
    rule = spec["telemetry"]["total_power"]
    return rails[rule] if rule in rails else sum(rails.values())

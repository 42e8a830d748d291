"""The tegrastats line in the shape a real board of the profile prints, root or normal user.

The profile lists the line's fields in the order of a real capture (telemetry.line for root, telemetry.user_line
for a normal user, who gets no clocks on most boards). Known field names are filled from the model; any other
entry is printed as written (engine fields such as `APE 25` that the model does not drive).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RailAverages:
    """tegrastats' own running average (and JetPack 7's maximum) per rail since it started."""

    sums: dict[str, float] = field(default_factory=dict)
    maxes: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, rails: dict[str, float]) -> None:
        self.count += 1
        for name, value in rails.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.maxes[name] = max(self.maxes.get(name, 0.0), value)

    def avg(self, name: str) -> float:
        return self.sums[name] / self.count


def _loads(before: dict, now: dict) -> tuple[list[float], float]:
    span = max(now["elapsed_s"] - before["elapsed_s"], 1e-6)
    cores = [min(max((b - a) / span, 0.0), 1.0) for a, b in zip(before["busy_s"], now["busy_s"])]
    return cores, min(max((now["gpu_busy_s"] - before["gpu_busy_s"]) / span, 0.0), 1.0)


def _rails(dialect: str, rails: dict[str, float], averages: RailAverages) -> list[str]:
    if dialect == "jp4":
        return [f"{n} {round(v)}/{round(averages.avg(n))}" for n, v in rails.items()]
    if dialect == "jp7":
        return [f"{n} {round(v)}mW/{round(averages.avg(n))}mW/{round(averages.maxes[n])}mW" for n, v in rails.items()]
    return [f"{n} {round(v)}mW/{round(averages.avg(n))}mW" for n, v in rails.items()]


def line(spec: dict, before: dict, now: dict, averages: RailAverages, root: bool) -> str:
    telemetry = spec["telemetry"]
    dialect = telemetry["dialect"]
    cores, gpu = _loads(before, now)
    averages.add(now["rails_mw"])
    memory = now["memory_mb"]
    free_blocks = max(int((memory["ram_total"] - memory["ram_used"]) / 4), 0)
    fields = {
        "RAM": f"RAM {round(memory['ram_used'])}/{round(memory['ram_total'])}MB (lfb {min(free_blocks, 4096)}x4MB)",
        "SWAP": f"SWAP {round(memory['swap_used'])}/{round(memory['swap_total'])}MB (cached 0MB)",
        "IRAM": "IRAM 0/252kB(lfb 252kB)",
        "CPU": "CPU [" + ",".join(f"{round(load * 100)}%@{int(now['cpu_mhz'])}" if i < now["online"] else "off"
                                  for i, load in enumerate(cores)) + "]",
        "EMC": f"EMC_FREQ {round(now['emc_util'] * 100)}%@{int(now['emc_mhz'])}",
        "EMC%": f"EMC_FREQ {round(now['emc_util'] * 100)}%",
        "GR3D": f"GR3D_FREQ {round(gpu * 100)}%@{int(now['gpu_mhz'])}",
        "GR3D[]": f"GR3D_FREQ {round(gpu * 100)}%@[{int(now['gpu_mhz'])}]",
        "GR3D%": f"GR3D_FREQ {round(gpu * 100)}%",
        "TEMPS": " ".join(f"{n}@{v:g}C/{v:g}C" if dialect == "jp7" else f"{n}@{v:g}C"
                          for n, v in now["temps_c"].items()),
        "RAILS": " ".join(_rails(dialect, now["rails_mw"], averages)),
    }
    text = " ".join(fields.get(entry, entry) for entry in telemetry["line" if root else "user_line"])
    return text if dialect == "jp4" else time.strftime("%m-%d-%Y %H:%M:%S ") + text

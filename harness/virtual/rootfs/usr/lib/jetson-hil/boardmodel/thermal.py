"""Temperatures: a first-order model per board, and a throttle past the trip point.

Each sensor starts at its reading in a real idle capture and moves towards idle + (power above idle) x the
board's thermal resistance with the board's time constant, so a long run warms the board for minutes as a real
one does instead of jumping in one sample. Past the trip temperature the clocks' caps drop (the throttle) until
the board has cooled by the hysteresis. Sensors a real board reports as a constant print the constant the profile
gives: the value of the release the virtual board reports (PMIC@50C on L4T 32.7, where older releases printed
PMIC@100C), or -256C for a sensor that is off. Resistance, time constant and trip point are the profile's; where it
cites no source they are assumptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HYSTERESIS_C = 5.0  # assumption
THROTTLE_FACTOR = 0.7  # assumption: share of the caps left while throttled


@dataclass
class Thermal:
    calibration: dict
    idle_mw: float
    rise_c: float = 0.0  # above the idle readings
    throttled: bool = False
    readings: dict[str, float] = field(default_factory=dict)

    def step(self, dt: float, power_mw: float) -> None:
        thermal = self.calibration["thermal"]
        target = max(power_mw - self.idle_mw, 0.0) / 1000.0 * thermal["c_per_w"]
        self.rise_c += (target - self.rise_c) * (1.0 - math.exp(-dt / thermal["tau_s"]))
        idle = self.calibration["idle_temps_c"]
        fixed = thermal["fixed"]
        self.readings = {name: fixed[name] if name in fixed else round(value + self.rise_c, 3)
                         for name, value in idle.items()}
        hottest = max(value for name, value in self.readings.items() if name not in fixed)
        if hottest >= thermal["trip_c"]:
            self.throttled = True
        elif hottest <= thermal["trip_c"] - HYSTERESIS_C:
            self.throttled = False

    @property
    def cap_factor(self) -> float:
        return THROTTLE_FACTOR if self.throttled else 1.0

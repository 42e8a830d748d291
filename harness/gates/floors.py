"""Floors: lab-calibrated minimums from the device profile and lab.yaml, applied only where they mean something.

A floor names the backend (and optionally the device) it was calibrated on, so a TensorRT floor never
judges ONNX Runtime on a CPU, and a floor on a power-derived figure never judges a board that only
models its power (a virtual board): those floors are reported as not applicable, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.profiles import DeviceProfile, PowerMode, ThroughputFloor
from harness.results.table import Source


@dataclass(frozen=True)
class FloorCheck:
    floor: ThroughputFloor
    value: float | None
    #: why the floor does not apply to this measurement; None when it does
    not_applicable: str | None

    @property
    def failed(self) -> bool:
        return self.not_applicable is None and (self.value is None or self.value < self.floor.min)

    def describe(self) -> str:
        where = f"{self.floor.metric} (floor {self.floor.min:g} for {self.floor.backend}"
        where += f" on {self.floor.device})" if self.floor.device else ")"
        if self.not_applicable:
            return f"{where}: not applied, {self.not_applicable}"
        return f"{where}: {'missing' if self.value is None else f'{self.value:.4g}'}"


def check_floors(floors: Iterable[ThroughputFloor], profile: DeviceProfile, mode: PowerMode, precision: str,
                 batch: int, *, backend: str, device: str, figures: Mapping[str, tuple[float, Source]],
                 ) -> list[FloorCheck]:
    """Every one of `floors` (the profile's and the lab's) set for this mode, precision and batch, judged against
    `figures` (metric → (value, measured|modeled))."""
    checks = []
    for floor in floors:
        if (profile.mode(floor.power_mode).id, floor.precision, floor.batch) != (mode.id, precision, batch):
            continue
        value, source = figures.get(floor.metric, (None, "measured"))
        reason = None
        if floor.backend != backend or (floor.device and not device.startswith(floor.device)):
            reason = f"this board runs {backend} on {device}"
        elif source != "measured":
            reason = f"{floor.metric} is {source} on this board, not measured"
        checks.append(FloorCheck(floor, value, reason))
    return checks

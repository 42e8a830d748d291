"""Device profiles: what a Jetson model *is* (SoC, cores, power modes, total-power rule, limits).

One YAML file per model in `device_profiles/`, validated here. Numbers come from NVIDIA
documents, cited in the YAML comments.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import ConfigError, UnknownDeviceError
from harness.yamlfile import load_model

Precision = Literal["fp32", "fp16", "int8"]
PROFILE_DIR_ENV = "JETSON_HIL_PROFILES"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerMode(_Strict):
    """One nvpmodel mode as the board's /etc/nvpmodel.conf defines it."""

    id: int = Field(ge=0)
    name: str = Field(min_length=1, pattern=r"^\w+$")
    budget_w: float | None = Field(default=None, gt=0, description=(
        "the watts in the mode's name, None for MAXN: a name, not a cap (the clock and core caps bound power; a "
        "saturated board draws more than this)"))
    online_cores: int = Field(ge=1)
    cpu_max_mhz: float = Field(gt=0)
    gpu_max_mhz: float = Field(gt=0)


class VersionRange(_Strict):
    min: str = Field(pattern=r"^\d+(\.\d+)*$")
    max: str = Field(pattern=r"^\d+(\.\d+)*$")


class TelemetryShape(_Strict):
    """How this board's tegrastats looks: used to pick the total-power rule and by virtual boards."""

    dialect: Literal["jp4", "jp5", "jp6", "jp7"]
    total_power: str = Field(description='rail name that is the board input, or "sum" for the sum of rails')
    rails: list[str] = Field(min_length=1)
    temperatures: list[str] = Field(min_length=1)
    line: list[str] = Field(min_length=1, description="fields of a root tegrastats line in a real capture's order: "
                            "RAM SWAP IRAM CPU EMC EMC% GR3D GR3D[] GR3D% TEMPS RAILS, or text printed as is")
    user_line: list[str] = Field(min_length=1, description="the same for a normal user's line")


class RailModel(_Strict):
    idle_mw: float = Field(ge=0, description="what the rail reads on an idle real board")
    loads: list[Literal["cpu", "gpu", "memory"]] = Field(default_factory=list, description="what else draws on it")


class ThermalModel(_Strict):
    c_per_w: float = Field(gt=0, description="steady temperature rise per watt above idle")
    tau_s: float = Field(gt=0, description="time constant of the rise")
    trip_c: float = Field(gt=0, description="temperature where the clocks throttle")
    fixed: dict[str, float] = Field(default_factory=dict, description="sensors a real board reports as a constant, "
                                    "with the constant the virtual board's release prints (-256: off)")


class BoardModel(_Strict):
    """A virtual board's calibration (harness/virtual, boardmodel): each value cites a source in `sources` or says
    why it is assumed in `assumptions`; the assumptions are listed on the board in /etc/jetson-hil/modeled."""

    rails: dict[str, RailModel] = Field(min_length=1)
    idle_temps_c: dict[str, float] = Field(min_length=1)
    ram_total_mb: float = Field(gt=0)
    ram_idle_mb: float = Field(ge=0)
    swap_total_mb: float = Field(ge=0)
    cpu_floor_mhz: float = Field(gt=0)
    gpu_floor_mhz: float = Field(gt=0)
    emc_mhz: tuple[float, float] = Field(description="memory clock floor and maximum")
    cpu_core_w: float = Field(gt=0, description="one core's dynamic power at full load and the top clock")
    gpu_w: float = Field(gt=0, description="the GPU's dynamic power at full load and the top clock")
    memory_w: float = Field(gt=0, description="memory controller and DRAM power at full bandwidth and the top clock")
    gpu_process_mb: float = Field(ge=0, description="shared RAM a GPU process holds (CUDA context, weights, buffers)")
    thermal: ThermalModel
    sources: dict[str, str] = Field(default_factory=dict)
    assumptions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_value_accounted_for(self) -> BoardModel:
        values = set(type(self).model_fields) - {"sources", "assumptions"}
        cited, assumed = set(self.sources), set(self.assumptions)
        if cited & assumed:
            raise ValueError(f"both cited and assumed: {sorted(cited & assumed)}")
        if unknown := (cited | assumed) - values:
            raise ValueError(f"sources/assumptions name no value of the model: {sorted(unknown)}")
        if missing := values - cited - assumed:
            raise ValueError(f"neither cited in `sources` nor listed in `assumptions`: {sorted(missing)}")
        return self


class VirtualLimits(_Strict):
    """What a virtual board of this profile gets from the host, and the model it runs."""

    cpus: float = Field(gt=0)
    memory_mb: int = Field(gt=0)
    l4t: str = Field(pattern=r"^\d+\.\d+\.\d+$", description="L4T release the virtual board reports")
    model: BoardModel


class ThroughputFloor(_Strict):
    """A lab-calibrated minimum: the throughput suite fails below it (none by default: record and pass).

    It holds only for the backend (and device, a prefix such as `cuda`) it was calibrated on, and a floor
    on fps_per_w only where power is measured (see harness.gates.floors)."""

    power_mode: int | str
    precision: Precision
    batch: int = Field(ge=1)
    backend: str = Field(min_length=1, description="backend the floor was calibrated on, e.g. tensorrt")
    device: str | None = Field(default=None, description="device prefix, e.g. cuda; any device when absent")
    metric: str = Field(pattern=r"^(raw_fps|pipeline_fps|fps_per_w)$")
    min: float = Field(gt=0)


class DeviceProfile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    display_name: str
    soc: str = Field(pattern=r"^tegra\d+$")
    cuda_arch: str = Field(pattern=r"^\d+\.\d+$")
    cpu_cores: int = Field(ge=1)
    cpu_model: str
    gpu: str
    memory_mb: int = Field(gt=0)
    dla_cores: int = Field(ge=0)
    part_numbers: list[str] = Field(min_length=1)
    device_tree_model: str
    compatible: list[str] = Field(min_length=1)
    power_modes: list[PowerMode] = Field(min_length=1)
    default_power_mode: int
    max_power_mode: int
    precisions: list[Precision] = Field(min_length=1)
    batch_sizes: list[int] = Field(default=[1, 4, 8], min_length=1)
    jetpack: VersionRange
    l4t: VersionRange
    telemetry: TelemetryShape
    virtual: VirtualLimits
    throughput_floors: list[ThroughputFloor] = Field(default_factory=list)

    @model_validator(mode="after")
    def _modes_consistent(self) -> DeviceProfile:
        ids = [mode.id for mode in self.power_modes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"power_modes: duplicate mode ids {sorted(ids)}")
        for label, mode_id in (("default_power_mode", self.default_power_mode),
                               ("max_power_mode", self.max_power_mode)):
            if mode_id not in ids:
                raise ValueError(f"{label}: {mode_id} is not one of the power_modes ids {ids}")
        model = self.virtual.model
        if list(model.rails) != self.telemetry.rails:
            raise ValueError(f"virtual.model.rails {list(model.rails)} differ from telemetry.rails "
                             f"{self.telemetry.rails} (same names, same order)")
        if list(model.idle_temps_c) != self.telemetry.temperatures:
            raise ValueError(f"virtual.model.idle_temps_c {list(model.idle_temps_c)} differ from "
                             f"telemetry.temperatures {self.telemetry.temperatures} (same names, same order)")
        for mode in self.power_modes:
            if mode.online_cores > self.cpu_cores:
                raise ValueError(f"power mode {mode.name}: online_cores {mode.online_cores} > cpu_cores")
        return self

    def mode(self, key: int | str) -> PowerMode:
        """A power mode by id or name (case-insensitive)."""
        for mode in self.power_modes:
            if mode.id == key or (isinstance(key, str) and mode.name.lower() == key.lower()):
                return mode
            if isinstance(key, str) and key.isdigit() and mode.id == int(key):
                return mode
        known = ", ".join(f"{m.id}={m.name}" for m in self.power_modes)
        raise ConfigError(f"profile {self.name}", "power mode", f"unknown mode {key!r}; known: {known}")

    @property
    def default_mode(self) -> PowerMode:
        return self.mode(self.default_power_mode)

    @property
    def max_mode(self) -> PowerMode:
        return self.mode(self.max_power_mode)

    def supports(self, capability: str) -> bool:
        """Capability check for @pytest.mark.requires: precisions, 'dla', or 'cores>=N'."""
        cap = capability.lower()
        if cap in ("fp32", "fp16", "int8"):
            return cap in self.precisions
        if cap == "dla":
            return self.dla_cores > 0
        if cap.startswith("cores>="):
            return self.cpu_cores >= int(cap.split(">=", 1)[1])
        raise ConfigError("@pytest.mark.requires", capability,
                          "unknown capability; use fp32, fp16, int8, dla or cores>=N")


def profile_dir() -> Path:
    """The profiles folder: $JETSON_HIL_PROFILES, else device_profiles/ in the source checkout."""
    env = os.environ.get(PROFILE_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "device_profiles"


def load_profile(path: Path) -> DeviceProfile:
    profile = load_model(path, DeviceProfile)
    if profile.name != path.stem:
        raise ConfigError(path, "name", f"must match the file name {path.stem!r}, got {profile.name!r}")
    return profile


@cache
def _load_all(directory: Path) -> dict[str, DeviceProfile]:
    if not directory.is_dir():
        raise ConfigError(directory, "", f"profiles folder not found; set ${PROFILE_DIR_ENV}")
    return {p.stem: load_profile(p) for p in sorted(directory.glob("*.yaml")) if not p.stem.startswith("lab")}


def all_profiles(directory: Path | None = None) -> dict[str, DeviceProfile]:
    """Every profile by name (cached per folder)."""
    return _load_all((directory or profile_dir()).resolve())


def get_profile(name: str, directory: Path | None = None) -> DeviceProfile:
    profiles = all_profiles(directory)
    try:
        return profiles[name]
    except KeyError:
        raise UnknownDeviceError(f"unknown profile {name!r}; known profiles: {', '.join(profiles)}") from None

"""The virtual board's model on its own (no container): power per rail follows what loads it (no cap: the mode's
clocks and cores bound it), clocks sit between the real floors and the caps, the board warms with its time constant
and throttles past its trip point, and jetson_clocks reads its options as the real one does. Power under load is held
against real loaded captures in test_power_under_load, the running boards against real captures in
test_virtual_fidelity."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

from harness.profiles import all_profiles, get_profile
from harness.virtual.recipe import board_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness/virtual/rootfs/usr/lib/jetson-hil"))
clocks_model = importlib.import_module("boardmodel.clocks")
power_model = importlib.import_module("boardmodel.power")
thermal_model = importlib.import_module("boardmodel.thermal")
spec_module = importlib.import_module("boardmodel.spec")
tools = importlib.import_module("boardmodel.tools")


def draw(spec: dict, mode: dict, cpu: list[float], gpu: float, locked: bool = False) -> dict[str, float]:
    clock = clocks_model.clocks(spec["model"], mode, cpu, gpu, locked, 1.0)
    return power_model.rails_mw(spec, power_model.Work.shown(cpu, mode["online_cores"], gpu, clock))


@pytest.mark.parametrize("name", sorted(all_profiles()))
def test_power_follows_the_work_and_the_mode(name: str) -> None:
    spec = board_spec(get_profile(name))
    cores = spec["cpu_cores"]
    for mode in spec["power_modes"]:
        online = mode["online_cores"]
        idle = draw(spec, mode, [0.0] * cores, 0.0)
        one = draw(spec, mode, [1.0] + [0.0] * (cores - 1), 0.0)
        full = draw(spec, mode, [1.0] * online + [0.0] * (cores - online), 1.0)
        total = [power_model.total_mw(spec, rails) for rails in (idle, one, full)]
        assert total[0] < total[1] < total[2], (mode["name"], total)
        if mode["id"] != spec["max_power_mode"]:  # a lower mode's caps bound its power below the top mode's
            top = next(m for m in spec["power_modes"] if m["id"] == spec["max_power_mode"])
            full_top = draw(spec, top, [1.0] * top["online_cores"] + [0.0] * (cores - top["online_cores"]), 1.0)
            assert total[2] <= power_model.total_mw(spec, full_top), mode["name"]
        for rail, model in spec["model"]["rails"].items():
            if model["loads"] == ["gpu"]:  # a GPU-only rail does not move with CPU work
                assert one[rail] - idle[rail] < 1.0, (rail, idle[rail], one[rail])
            if "cpu" in model["loads"]:
                assert one[rail] > idle[rail], rail


def test_idle_rails_are_the_capture_at_the_floor_clocks() -> None:
    """Nano idles at its capture (POM_5V_IN 933, GPU 0, CPU 84 mW) give or take the clocked-idle activity."""
    spec = board_spec(get_profile("nano"))
    mode = next(m for m in spec["power_modes"] if m["id"] == spec["default_power_mode"])
    idle = draw(spec, mode, [0.0] * 4, 0.0)
    assert idle["POM_5V_GPU"] == pytest.approx(0, abs=5)
    assert idle["POM_5V_CPU"] == pytest.approx(84, abs=15)
    assert idle["POM_5V_IN"] == pytest.approx(933, abs=25)
    locked = draw(spec, mode, [0.0] * 4, 0.0, locked=True)
    assert power_model.total_mw(spec, locked) > power_model.total_mw(spec, idle) + 50  # jetson_clocks costs power


def test_clocks_between_floor_and_cap() -> None:
    spec = board_spec(get_profile("orin-nano"))
    model = spec["model"]
    mode = next(m for m in spec["power_modes"] if m["name"] == "15W")
    idle = clocks_model.clocks(model, mode, [0.0] * 6, 0.0, False, 1.0)
    assert (idle.cpu_mhz, idle.gpu_mhz, idle.emc_mhz) == (729.6, 306, 204)
    busy = clocks_model.clocks(model, mode, [1.0] + [0.0] * 5, 1.0, False, 1.0)
    assert (busy.cpu_mhz, busy.gpu_mhz) == (mode["cpu_max_mhz"], mode["gpu_max_mhz"])
    locked = clocks_model.clocks(model, mode, [0.0] * 6, 0.0, True, 1.0)
    assert (locked.cpu_mhz, locked.gpu_mhz, locked.emc_mhz) == (mode["cpu_max_mhz"], mode["gpu_max_mhz"], 3199)
    throttled = clocks_model.clocks(model, mode, [0.0] * 6, 0.0, True, thermal_model.THROTTLE_FACTOR)
    assert throttled.cpu_mhz == pytest.approx(mode["cpu_max_mhz"] * thermal_model.THROTTLE_FACTOR)


def test_the_board_warms_with_its_time_constant_and_throttles_past_the_trip_point() -> None:
    spec = board_spec(get_profile("nano"))
    model = spec["model"]
    thermal = model["thermal"]
    board = thermal_model.Thermal(model, idle_mw=933.0)
    board.step(thermal["tau_s"], 933.0 + 5000.0)  # one time constant at 5 W above idle
    rise = thermal["c_per_w"] * 5 * (1 - math.exp(-1))
    assert board.readings["CPU"] == pytest.approx(model["idle_temps_c"]["CPU"] + rise, abs=0.01)
    assert board.readings["PMIC"] == 50  # a constant on the real board (L4T 32.7)
    assert not board.throttled and board.cap_factor == 1.0
    hot = (thermal["trip_c"] - min(model["idle_temps_c"].values()) + 10) / thermal["c_per_w"] * 1000
    for _ in range(50):
        board.step(thermal["tau_s"] / 5, 933.0 + hot)
    assert board.throttled and board.cap_factor == thermal_model.THROTTLE_FACTOR
    board.step(thermal["tau_s"] * 20, 933.0)  # back at idle for long: cooled past the hysteresis
    assert not board.throttled


@pytest.fixture
def virtual_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The board's state files under tmp_path, as root, with clocks unlocked."""
    monkeypatch.setattr(spec_module, "CLOCKS_STATE", str(tmp_path / "clocks_locked"))
    monkeypatch.setattr(tools, "board", lambda: board_spec(get_profile("nano")))
    monkeypatch.setattr(tools.os, "geteuid", lambda: 0)
    state = {"throttled": False, "cpu_mhz": 102, "gpu_mhz": 76, "emc_mhz": 204}
    monkeypatch.setattr(tools, "read_state", lambda: state)
    spec_module.set_clocks_locked(False)
    return tmp_path


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--bogus"]])
def test_jetson_clocks_help_prints_usage_and_locks_nothing(virtual_board: Path, argv: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The real script prints its usage to stderr and exits 0 (its usage() exits 0, an unknown option too)."""
    assert tools.jetson_clocks_main(argv) == 0
    assert "Usage:" in capsys.readouterr().err
    assert not spec_module.clocks_locked()


def test_jetson_clocks_store_lock_restore(virtual_board: Path) -> None:
    stored = virtual_board / "l4t_dfs.conf"
    assert tools.jetson_clocks_main(["--store", str(stored)]) == 0 and "jetson-hil-locked=0" in stored.read_text()
    assert tools.jetson_clocks_main([]) == 0 and spec_module.clocks_locked()
    assert tools.jetson_clocks_main(["--restore", str(stored)]) == 0 and not spec_module.clocks_locked()
    assert tools.jetson_clocks_main(["--restore", str(virtual_board / "missing.conf")]) == 1

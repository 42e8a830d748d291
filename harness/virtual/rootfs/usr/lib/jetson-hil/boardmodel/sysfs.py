"""The board's sysfs as jetson-stats reads it, written from the model's state under FAKE_SYS.

A container's /sys is the host's and read-only, so jetson-stats runs in its testing mode (JTOP_TESTING), which
reads the files a Jetson has under /sys (and /proc/stat) from /fake_sys instead: per-core CPU time and cpufreq,
the GPU's devfreq node and load, the EMC clock, and the INA3221 power monitors. The layout follows a real board's
(JetPack 4: iio rail_name_N channels, `ina3221x`; JetPack 5+: hwmon inN_label channels, `ina3221`), three rails
per monitor chip as the INA3221 has three channels. Values are the model's, so jtop and tegrastats read one board.
"""

from __future__ import annotations

import os

from .spec import hardware_max, write

FAKE_SYS = "/fake_sys"
USER_HZ = 100  # /proc/stat counts in clock ticks of 1/100 s
#: assumption: the bus voltage the INA3221 channels read (Jetson modules' 5 V input side); power = V x I
BUS_MV = 5000
CHANNELS_PER_CHIP = 3
GPU_NODE = "17000000.gpu"  # the devfreq node's name; jetson-stats finds the GPU by its of_node name "gpu"
GPU_DEVFREQ = f"devices/platform/{GPU_NODE}/devfreq/{GPU_NODE}"
EMC = "kernel/debug/bpmp/debug/clk/emc"


def _put(rel: str, value: object) -> None:
    write(os.path.join(FAKE_SYS, rel), f"{value}\n")


def _rail_files(dialect: str, chip: int, channel: int, name: str) -> tuple[str, str, dict[str, str]]:
    """(the channel's current file, voltage file, static files) of one rail, in the board's driver layout."""
    device = f"bus/i2c/devices/1-004{chip}"
    if dialect == "jp4":
        base = f"{device}/iio:device{chip}"
        return (f"{base}/in_current{channel}_input", f"{base}/in_voltage{channel}_input",
                {f"{device}/name": "ina3221x", f"{base}/rail_name_{channel}": name})
    base = f"{device}/hwmon/hwmon{chip + 1}"
    return (f"{base}/curr{channel + 1}_input", f"{base}/in{channel + 1}_input",
            {f"{device}/name": "ina3221", f"{base}/in{channel + 1}_label": name})


class FakeSys:
    """Writes the static tree once, what a power mode sets when the mode changes, and what changes at every step
    of the model (the counters, clocks, load and rails): a step writes only the files that can change."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        calibration = spec["model"]
        floors_khz = (int(calibration["cpu_floor_mhz"] * 1000), int(calibration["gpu_floor_mhz"] * 1e6))
        self.rails: dict[str, str] = {}
        self.mode_id: int | None = None
        static: dict[str, object] = {
            f"{GPU_DEVFREQ}/device/of_node/name": "gpu",
            f"{GPU_DEVFREQ}/device/railgate_enable": 0,
            f"{GPU_DEVFREQ}/governor": "nvhost_podgov",
            f"{GPU_DEVFREQ}/min_freq": floors_khz[1],
            f"{EMC}/min_rate": int(calibration["emc_mhz"][0] * 1e6),
            f"{EMC}/max_rate": int(calibration["emc_mhz"][1] * 1e6),
        }
        for core in range(spec["cpu_cores"]):
            cpufreq = f"devices/system/cpu/cpu{core}/cpufreq"
            static.update({f"{cpufreq}/scaling_governor": "schedutil",
                           f"{cpufreq}/cpuinfo_min_freq": floors_khz[0],
                           f"{cpufreq}/scaling_min_freq": floors_khz[0],
                           f"{cpufreq}/cpuinfo_max_freq": int(hardware_max(spec, "cpu_max_mhz") * 1000)})
        for index, name in enumerate(calibration["rails"]):
            current, voltage, files = _rail_files(spec["telemetry"]["dialect"], *divmod(index, CHANNELS_PER_CHIP), name)
            static.update(files)
            static[voltage] = BUS_MV
            self.rails[name] = current
        for rel, value in static.items():
            _put(rel, value)
        link = os.path.join(FAKE_SYS, "class/devfreq", GPU_NODE)
        if not os.path.islink(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.join(FAKE_SYS, GPU_DEVFREQ), link)

    def update(self, state: dict, mode: dict, gpu_load: float) -> None:
        """`state` is what the daemon publishes; `gpu_load` the GPU's load over the last step (0..1)."""
        ticks = [(round(busy * USER_HZ), round((state["elapsed_s"] - busy) * USER_HZ)) for busy in state["busy_s"]]
        online = range(mode["online_cores"])
        lines = [f"cpu  {sum(ticks[c][0] for c in online)} 0 0 {sum(ticks[c][1] for c in online)} 0 0 0 0 0 0"]
        lines += [f"cpu{c} {ticks[c][0]} 0 0 {ticks[c][1]} 0 0 0 0 0 0" for c in online]
        write(os.path.join(FAKE_SYS, "stat"), "\n".join(lines) + "\n")
        if mode["id"] != self.mode_id:
            self._mode(mode)
        for core in range(self.spec["cpu_cores"]):
            for kind in ("scaling", "cpuinfo"):
                _put(f"devices/system/cpu/cpu{core}/cpufreq/{kind}_cur_freq", int(state["cpu_mhz"] * 1000))
        _put(f"{GPU_DEVFREQ}/cur_freq", int(state["gpu_mhz"] * 1e6))
        _put(f"{GPU_DEVFREQ}/device/load", round(gpu_load * 1000))
        _put(f"{EMC}/rate", int(state["emc_mhz"] * 1e6))
        for name, current in self.rails.items():
            _put(current, round(state["rails_mw"][name] * 1000 / BUS_MV))

    def _mode(self, mode: dict) -> None:
        """What a power mode sets: the cores online, the CPU and GPU caps."""
        for core in range(self.spec["cpu_cores"]):
            cpu = f"devices/system/cpu/cpu{core}"
            _put(f"{cpu}/online", int(core < mode["online_cores"]))
            _put(f"{cpu}/cpufreq/scaling_max_freq", int(mode["cpu_max_mhz"] * 1000))
        _put(f"{GPU_DEVFREQ}/max_freq", int(mode["gpu_max_mhz"] * 1e6))
        self.mode_id = mode["id"]

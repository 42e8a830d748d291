#!/usr/bin/python3
"""Emulated Jetson tools for a virtual board: nvpmodel, jetson_clocks, tegrastats, reboot.

Runs INSIDE the virtual board's container (Debian's python3). The board's facts come from
/etc/jetson-hil/board.json (written from the device profile when the image is built). State a real
board keeps across reboots (the power mode) lives in /var/lib/nvpmodel/status; clock locks do not
survive a reboot, as on a real board. CPU load and memory are the container's real figures (cgroup);
clocks, temperatures and power are modeled from them and the power mode
(/etc/jetson-hil/modeled says which).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time

BOARD_FILE = "/etc/jetson-hil/board.json"
MODE_STATE = "/var/lib/nvpmodel/status"
RUN_DIR = "/run/jetson-hil"
CLOCKS_STATE = RUN_DIR + "/clocks_locked"
BOOT_CPUS = RUN_DIR + "/boot_cpus"
GPU_LOAD = RUN_DIR + "/gpu_load"
TEGRASTATS_PID = "/run/tegrastats.pid"
DEFAULT_STORE = "/root/l4t_dfs.conf"


def board() -> dict:
    with open(BOARD_FILE) as f:
        return json.load(f)


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def require_root(tool: str) -> None:
    if os.geteuid() != 0:
        sys.stderr.write(f"NVPM ERROR: {tool} must be run as root (use sudo)\n")
        sys.exit(1)


# ----- power mode ---------------------------------------------------------------------------

def current_mode_id(spec: dict) -> int:
    state = _read(MODE_STATE)
    for part in state.split():
        if part.startswith("pmode:"):
            return int(part[len("pmode:"):])
    return spec["default_power_mode"]


def mode(spec: dict, mode_id: int | None = None) -> dict:
    wanted = current_mode_id(spec) if mode_id is None else mode_id
    for m in spec["power_modes"]:
        if m["id"] == wanted:
            return m
    raise KeyError(wanted)


def boot_cpus() -> list[int]:
    text = _read(BOOT_CPUS)
    return [int(c) for c in text.split(",") if c] or sorted(os.sched_getaffinity(0))


def host_cpus_for(spec: dict, online: int) -> list[int]:
    """Map the mode's online cores onto the container's CPUs, proportionally (at least one)."""
    cpus = boot_cpus()
    count = max(1, min(len(cpus), math.ceil(online * len(cpus) / spec["cpu_cores"])))
    return cpus[:count]


def apply_affinity(spec: dict) -> None:
    """Pin every process of the board to the CPUs its power mode leaves online."""
    cpus = set(host_cpus_for(spec, mode(spec)["online_cores"]))
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            continue  # exited meanwhile, or a kernel thread


def set_mode(spec: dict, mode_id: int) -> None:
    mode(spec, mode_id)  # raises KeyError when unknown
    _write(MODE_STATE, f"pmode:{mode_id:04d} fmode:quiet\n")
    apply_affinity(spec)


# ----- clocks -------------------------------------------------------------------------------

def clocks_locked() -> bool:
    return _read(CLOCKS_STATE, "0") == "1"


def set_clocks_locked(locked: bool) -> None:
    _write(CLOCKS_STATE, "1\n" if locked else "0\n")


def cpu_min_khz(spec: dict) -> int:
    return int(spec["cpu_min_mhz"] * 1000)


def gpu_min_hz(spec: dict) -> int:
    return int(spec["gpu_min_mhz"] * 1_000_000)


# ----- load from the container's cgroup ----------------------------------------------------

def _cgroup_cpu_usage_s() -> float:
    v2 = _read("/sys/fs/cgroup/cpu.stat")
    if v2:
        for line in v2.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    for path in ("/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"):
        text = _read(path)
        if text:
            return int(text) / 1e9
    return 0.0  # no cgroup CPU accounting: the board reports idle


def _cgroup_cpu_limit() -> float | None:
    v2 = _read("/sys/fs/cgroup/cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    quota = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or _read("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us")
    period = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or _read("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def memory_mb(spec: dict) -> tuple[float, float]:
    """(used, total) MB of the board: the container's memory and its limit."""
    used = _read("/sys/fs/cgroup/memory.current") or _read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    limit = _read("/sys/fs/cgroup/memory.max") or _read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    total_mb = spec["virtual"]["memory_mb"]
    if limit and limit != "max" and int(limit) < (1 << 50):
        total_mb = int(limit) / 2**20
    used_mb = int(used) / 2**20 if used else 0.0
    return min(used_mb, total_mb), total_mb


class LoadMeter:
    """CPU load of the board between two calls, as a fraction of what its online CPUs can do."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.last_usage = _cgroup_cpu_usage_s()
        self.last_time = time.monotonic()

    def sample(self) -> float:
        usage, now = _cgroup_cpu_usage_s(), time.monotonic()
        elapsed = max(now - self.last_time, 1e-6)
        busy = max(usage - self.last_usage, 0.0) / elapsed
        self.last_usage, self.last_time = usage, now
        capacity = float(len(host_cpus_for(self.spec, mode(self.spec)["online_cores"])))
        limit = _cgroup_cpu_limit()
        if limit is not None:
            capacity = min(capacity, limit)
        return min(busy / capacity, 1.0)


def gpu_load() -> float:
    """GPU load a workload on the board reports (0..1); a board without a GPU workload idles."""
    try:
        return min(max(float(_read(GPU_LOAD, "0")), 0.0), 1.0)
    except ValueError:
        return 0.0


# ----- modeled clocks, temperatures, power -------------------------------------------------

def cpu_freq_mhz(spec: dict, load: float) -> int:
    top = mode(spec)["cpu_max_mhz"]
    if clocks_locked():
        return int(top)
    low = spec["cpu_min_mhz"]
    return int(low + (top - low) * min(1.0, load * 1.5))


def gpu_freq_mhz(spec: dict, load: float) -> int:
    top = mode(spec)["gpu_max_mhz"]
    if clocks_locked():
        return int(top)
    low = spec["gpu_min_mhz"]
    return int(low + (top - low) * load)


def power_mw(spec: dict, cpu_load: float, gpu: float) -> float:
    """Board input power: idle floor plus load-proportional share of the mode's budget."""
    m = mode(spec)
    budget = (m.get("budget_w") or spec["max_budget_w"]) * 1000.0
    idle = spec["idle_power_w"] * 1000.0
    cores = m["online_cores"] / spec["cpu_cores"]
    locked = 0.05 if clocks_locked() else 0.0
    return idle + (budget - idle) * min(1.0, 0.55 * cpu_load * cores + 0.45 * gpu + locked)


def temperature_c(base: float, load: float) -> float:
    return round(base + 25.0 * load, 3)


# ----- tegrastats line ---------------------------------------------------------------------

RAIL_SHARES = (0.42, 0.33, 0.15, 0.10)


def rails(spec: dict, total: float) -> list[tuple[str, float]]:
    names = spec["telemetry"]["rails"]
    rule = spec["telemetry"]["total_power"]
    if rule in names:
        subs = [n for n in names if n != rule]
        return [(rule, total)] + [(n, total * 0.8 * RAIL_SHARES[i % 4]) for i, n in enumerate(subs)]
    shares = [RAIL_SHARES[i % 4] for i in range(len(names))]
    scale = sum(shares)
    return [(n, total * s / scale) for n, s in zip(names, shares, strict=True)]


class Averages:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.maxes: dict[str, float] = {}
        self.count = 0

    def add(self, values: list[tuple[str, float]]) -> None:
        self.count += 1
        for name, value in values:
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.maxes[name] = max(self.maxes.get(name, 0.0), value)

    def avg(self, name: str) -> float:
        return self.sums[name] / self.count


def tegrastats_line(spec: dict, meter: LoadMeter, averages: Averages) -> str:
    dialect = spec["telemetry"]["dialect"]
    load = meter.sample()
    gpu = gpu_load()
    m = mode(spec)
    freq = cpu_freq_mhz(spec, load)
    cores = ",".join(f"{round(load * 100)}%@{freq}" if i < m["online_cores"] else "off"
                     for i in range(spec["cpu_cores"]))
    used, total = memory_mb(spec)
    gfreq = gpu_freq_mhz(spec, gpu)
    gr3d = f"GR3D_FREQ {round(gpu * 100)}%@[{gfreq}]" if dialect in ("jp6", "jp7") else \
        f"GR3D_FREQ {round(gpu * 100)}%@{gfreq}"
    temps = []
    for i, name in enumerate(spec["telemetry"]["temperatures"]):
        value = temperature_c(34.0 + i * 0.5, max(load, gpu))
        temps.append(f"{name}@{value}C/{value}C" if dialect == "jp7" else f"{name}@{value}C")
    values = rails(spec, power_mw(spec, load, gpu))
    averages.add(values)
    if dialect == "jp4":
        rail_text = [f"{n} {round(v)}/{round(averages.avg(n))}" for n, v in values]
    elif dialect == "jp7":
        rail_text = [f"{n} {round(v)}mW/{round(averages.avg(n))}mW/{round(averages.maxes[n])}mW" for n, v in values]
    else:
        rail_text = [f"{n} {round(v)}mW/{round(averages.avg(n))}mW" for n, v in values]
    parts = [f"RAM {round(used)}/{round(total)}MB (lfb 64x4MB)", "SWAP 0/0MB (cached 0MB)", f"CPU [{cores}]",
             f"EMC_FREQ {round(load * 20)}%@{spec['emc_max_mhz']}", gr3d, *temps, *rail_text]
    line = " ".join(parts)
    if dialect != "jp4":
        line = time.strftime("%m-%d-%Y %H:%M:%S ") + line
    return line


# ----- tool entry points -------------------------------------------------------------------

def nvpmodel_main(argv: list[str]) -> int:
    spec = board()
    if "-q" in argv:
        m = mode(spec)
        print(f"NV Power Mode: {m['name']}\n{m['id']}")
        return 0
    if "-p" in argv:
        print("NVPM VERB: Config file: /etc/nvpmodel.conf")
        print(f"NVPM VERB: PM_CONFIG: DEFAULT={mode(spec, spec['default_power_mode'])['name']}"
              f"({spec['default_power_mode']})")
        for m in spec["power_modes"]:
            print(f"NVPM VERB: POWER_MODEL: ID={m['id']} NAME={m['name']}")
            for core in range(spec["cpu_cores"]):
                print(f"NVPM VERB: CPU_ONLINE CORE_{core} {1 if core < m['online_cores'] else 0}")
            print(f"NVPM VERB: CPU MAX_FREQ {int(m['cpu_max_mhz'] * 1000)}")
            print(f"NVPM VERB: GPU MAX_FREQ {int(m['gpu_max_mhz'] * 1_000_000)}")
            print("NVPM VERB:")
        return 0
    if "-m" in argv:
        require_root("nvpmodel")
        try:
            mode_id = int(argv[argv.index("-m") + 1])
            set_mode(spec, mode_id)
        except (IndexError, ValueError, KeyError):
            sys.stderr.write("NVPM ERROR: invalid mode id; see nvpmodel -p --verbose\n")
            return 1
        return 0
    sys.stderr.write("usage: nvpmodel [-q] [-m MODE_ID] [-p --verbose]\n")
    return 1


def _clock_lines(spec: dict) -> list[str]:
    m = mode(spec)
    locked = clocks_locked()
    load = 0.0
    lines = [f"SOC family:{spec['soc']}  Machine:{spec['device_tree_model']}",
             f"Online CPUs: 0-{m['online_cores'] - 1}" if m["online_cores"] > 1 else "Online CPUs: 0"]
    top_khz = int(m["cpu_max_mhz"] * 1000)
    for core in range(spec["cpu_cores"]):
        online = core < m["online_cores"]
        low = top_khz if locked else cpu_min_khz(spec)
        cur = top_khz if locked else int(cpu_freq_mhz(spec, load) * 1000)
        lines.append(f"cpu{core}: Online={int(online)} Governor=schedutil MinFreq={low} MaxFreq={top_khz} "
                     f"CurrentFreq={cur} IdleStates: WFI=1 c7=1")
    gpu_top = int(m["gpu_max_mhz"] * 1_000_000)
    gpu_low = gpu_top if locked else gpu_min_hz(spec)
    lines.append(f"GPU MinFreq={gpu_low} MaxFreq={gpu_top} CurrentFreq={gpu_low}")
    emc = int(spec["emc_max_mhz"] * 1_000_000)
    emc_low = emc if locked else 204_000_000
    lines.append(f"EMC MinFreq={emc_low} MaxFreq={emc} CurrentFreq={emc} FreqOverride={int(locked)}")
    lines.append(f"NV Power Mode: {m['name']}")
    return lines


def jetson_clocks_main(argv: list[str]) -> int:
    spec = board()
    require_root("jetson_clocks")
    if "--show" in argv:
        print("\n".join(_clock_lines(spec)))
        return 0
    for flag in ("--store", "--restore"):
        if flag in argv:
            index = argv.index(flag)
            path = argv[index + 1] if len(argv) > index + 1 else DEFAULT_STORE
            if flag == "--store":
                _write(path, "\n".join(_clock_lines(spec)) + f"\njetson-hil-locked={int(clocks_locked())}\n")
            else:
                text = _read(path)
                if not text:
                    sys.stderr.write(f"Error: {path} not found or empty\n")
                    return 1
                set_clocks_locked("jetson-hil-locked=1" in text)
            return 0
    set_clocks_locked(True)
    return 0


def tegrastats_main(argv: list[str]) -> int:
    spec = board()
    interval_ms = 1000
    logfile = None
    if "--interval" in argv:
        interval_ms = max(1, int(argv[argv.index("--interval") + 1]))
    if "--logfile" in argv:
        logfile = argv[argv.index("--logfile") + 1]
    if "--stop" in argv:
        pid = _read(TEGRASTATS_PID)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
            os.unlink(TEGRASTATS_PID)
        return 0
    if "--start" in argv:
        if os.fork():
            return 0
        os.setsid()
        _write(TEGRASTATS_PID, f"{os.getpid()}\n")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(logfile, "a", buffering=1) if logfile else contextlib.nullcontext(sys.stdout) as out:
        meter, averages = LoadMeter(spec), Averages()
        period = interval_ms / 1000.0
        deadline = time.monotonic()
        try:
            while True:
                deadline += period
                time.sleep(max(0.0, deadline - time.monotonic()))
                out.write(tegrastats_line(spec, meter, averages) + "\n")
                out.flush()
        except (BrokenPipeError, KeyboardInterrupt):
            return 0


def reboot_main(argv: list[str]) -> int:
    """A container restart is the board's reboot: end PID 1 and let the restart policy bring it back."""
    if os.geteuid() != 0:
        sys.stderr.write("reboot: must be root\n")
        return 1
    os.kill(1, signal.SIGTERM)
    return 0


TOOLS = {"nvpmodel": nvpmodel_main, "jetson_clocks": jetson_clocks_main, "tegrastats": tegrastats_main,
         "reboot": reboot_main}

if __name__ == "__main__":
    sys.exit(TOOLS[os.path.basename(sys.argv[0])](sys.argv[1:]))

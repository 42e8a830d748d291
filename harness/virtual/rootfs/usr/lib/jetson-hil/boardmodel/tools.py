"""The emulated Jetson tools: nvpmodel, jetson_clocks, tegrastats, reboot, and the model daemon's entry point."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from . import spec as board_spec
from .cpus import host_cpus_for, pin, threads
from .spec import board, clocks_locked, mode, read, set_clocks_locked, write
from .state import read_state

# The model's own modules (daemon, lines, thermal) are imported where a tool needs them: a tool's start-up is paid
# at every call, and jetson-stats' service calls `nvpmodel -q` at every sample.

TEGRASTATS_PID = "/run/tegrastats.pid"
DEFAULT_STORE = "/root/l4t_dfs.conf"


def require_root(tool: str) -> None:
    if os.geteuid() != 0:
        sys.stderr.write(f"NVPM ERROR: {tool} must be run as root (use sudo)\n")
        sys.exit(1)


def apply_affinity(spec: dict) -> None:
    """Pin every thread of the board to the host CPUs its power mode leaves online."""
    pin([tid for _, tid in threads()], host_cpus_for(spec, mode(spec)["online_cores"]))


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
            mode(spec, mode_id)  # raises KeyError when unknown
        except (IndexError, ValueError, KeyError):
            sys.stderr.write("NVPM ERROR: invalid mode id; see nvpmodel -p --verbose\n")
            return 1
        write(board_spec.MODE_STATE, f"pmode:{mode_id:04d} fmode:quiet\n")
        apply_affinity(spec)
        return 0
    sys.stderr.write("usage: nvpmodel [-q] [-m MODE_ID] [-p --verbose]\n")
    return 1


def _clock_lines(spec: dict) -> list[str]:
    """What `jetson_clocks --show` prints: the clocks the model runs at now (the ones tegrastats shows)."""
    from .thermal import THROTTLE_FACTOR

    m = mode(spec)
    state = read_state()
    locked = clocks_locked()
    calibration = spec["model"]
    online = m["online_cores"]
    lines = [f"SOC family:{spec['soc']}  Machine:{spec['device_tree_model']}",
             f"Online CPUs: 0-{online - 1}" if online > 1 else "Online CPUs: 0"]
    # a lock or a mode change takes effect at once, not at the model's next step
    factor = THROTTLE_FACTOR if state["throttled"] else 1.0

    def now(top: int, modeled: float) -> int:
        return int(top * factor) if locked else min(int(modeled), top)

    top = int(m["cpu_max_mhz"] * 1000)
    low = top if locked else int(calibration["cpu_floor_mhz"] * 1000)
    for core in range(spec["cpu_cores"]):
        lines.append(f"cpu{core}: Online={int(core < online)} Governor=schedutil MinFreq={low} MaxFreq={top} "
                     f"CurrentFreq={now(top, state['cpu_mhz'] * 1000)} IdleStates: WFI=1 c7=1")
    gpu_top = int(m["gpu_max_mhz"] * 1_000_000)
    gpu_low = gpu_top if locked else int(calibration["gpu_floor_mhz"] * 1_000_000)
    lines.append(f"GPU MinFreq={gpu_low} MaxFreq={gpu_top} CurrentFreq={now(gpu_top, state['gpu_mhz'] * 1_000_000)}")
    emc_min, emc_max = (int(f * 1_000_000) for f in calibration["emc_mhz"])
    emc_now = emc_max if locked else int(state["emc_mhz"] * 1_000_000)
    lines.append(f"EMC MinFreq={emc_max if locked else emc_min} MaxFreq={emc_max} "
                 f"CurrentFreq={emc_now} FreqOverride={int(locked)}")
    lines.append(f"NV Power Mode: {m['name']}")
    return lines


#: NVIDIA's jetson_clocks usage text (L4T's /usr/bin/jetson_clocks), which it prints to stderr
JETSON_CLOCKS_USAGE = """Maximize jetson performance by setting static max frequency to CPU, GPU and EMC clocks.
Usage:
jetson_clocks [options]
  options,
  --help, -h         show this help message
  --show             display current settings
  --fan              set PWM fan speed to maximal
  --store [file]     store current settings to a file (default: ${HOME}/l4t_dfs.conf)
  --restore [file]   restore saved settings from a file (default: ${HOME}/l4t_dfs.conf)
  run jetson_clocks without any option to set static max frequency to CPU, GPU and EMC clocks.
"""


def _jetson_clocks_args(argv: list[str]) -> tuple[str, str] | None:
    """(action, file) as the real script reads its options, before it checks for root; None after it printed its
    usage (for --help, and for an unknown option too: the real script's usage() exits 0 before its `exit 1`)."""
    action, path = "lock", DEFAULT_STORE
    args = iter(argv)
    for arg in args:
        if arg in ("--store", "--restore"):
            action, path = arg[2:], next(args, path)
        elif arg == "--show":
            action = "show"
        elif arg != "--fan":  # --fan also sets the fan to full, which a virtual board does not have
            if arg not in ("-h", "--help"):
                sys.stderr.write(f"Unknown option: {arg}\n")
            sys.stderr.write(JETSON_CLOCKS_USAGE)
            return None
    return action, path


def jetson_clocks_main(argv: list[str]) -> int:
    parsed = _jetson_clocks_args(argv)
    if parsed is None:
        return 0
    action, path = parsed
    spec = board()
    require_root("jetson_clocks")
    if action == "show":
        print("\n".join(_clock_lines(spec)))
    elif action == "store":
        write(path, "\n".join(_clock_lines(spec)) + f"\njetson-hil-locked={int(clocks_locked())}\n")
    elif action == "restore":
        text = read(path)
        if not text:
            sys.stderr.write(f"Error: {path} file not found !\n")
            return 1
        set_clocks_locked("jetson-hil-locked=1" in text)
    else:
        set_clocks_locked(True)
    return 0


def tegrastats_main(argv: list[str]) -> int:
    from .lines import RailAverages, line

    spec = board()
    interval_ms = 1000
    logfile = None
    if "--interval" in argv:
        interval_ms = max(1, int(argv[argv.index("--interval") + 1]))
    if "--logfile" in argv:
        logfile = argv[argv.index("--logfile") + 1]
    if "--stop" in argv:
        pid = read(TEGRASTATS_PID)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
            os.unlink(TEGRASTATS_PID)
        return 0
    if "--start" in argv:
        if os.fork():
            return 0
        os.setsid()
        write(TEGRASTATS_PID, f"{os.getpid()}\n")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    root = os.geteuid() == 0
    with open(logfile, "a", buffering=1) if logfile else contextlib.nullcontext(sys.stdout) as out:
        averages = RailAverages()
        before = read_state()
        period = interval_ms / 1000.0
        deadline = time.monotonic()
        try:
            while True:
                deadline += period
                time.sleep(max(0.0, deadline - time.monotonic()))
                now = read_state()
                out.write(line(spec, before, now, averages, root) + "\n")
                out.flush()
                before = now
        except (BrokenPipeError, KeyboardInterrupt):
            return 0


def reboot_main(argv: list[str]) -> int:
    """A container restart is the board's reboot: end PID 1 and let the restart policy bring it back."""
    if os.geteuid() != 0:
        sys.stderr.write("reboot: must be root\n")
        return 1
    os.kill(1, signal.SIGTERM)
    return 0


def model_main(argv: list[str]) -> int:
    from . import daemon

    daemon.run()
    return 0


TOOLS = {"nvpmodel": nvpmodel_main, "jetson_clocks": jetson_clocks_main, "tegrastats": tegrastats_main,
         "reboot": reboot_main, "jetson-model": model_main}

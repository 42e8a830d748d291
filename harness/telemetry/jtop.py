"""jtop as a telemetry source: jetson-stats' own Python API on the board, one JSON sample per line.

Most labs already run jetson-stats' jtop service on their boards. The sampler sends a short script to the board
that reads the service through jetson-stats' client (`from jtop import jtop`, the board's own install; the
harness never imports jetson-stats) and prints each sample as JSON stamped with the board's clock, so a jtop window
is cut to a phase exactly as a tegrastats one is. The samples become the same `TegrastatsSample`s, so one
`summarize` computes power, energy, heat and throttling from either source. jtop reads the power monitors' current
(`power`, the INA3221's instantaneous V x I) and keeps its own running average (`avg`); energy uses `power`.
"""

from __future__ import annotations

import json
import shlex

from harness.board.board import Board
from harness.errors import HarnessError
from harness.telemetry.tegrastats import CpuCore, Rail, TegrastatsSample, without_impossible

#: how long the board script waits for a jtop service that is (re)starting, as after a boot
SERVICE_WAIT_S = 20
#: runs on the board with its python3 (3.6+: JetPack 4 ships 3.6); argv: the interval in seconds, the wait
BOARD_SCRIPT = """\
import json, sys, time
try:
    from jtop import jtop, JtopException
except ImportError as exc:
    print(json.dumps({"error": "jetson-stats is not installed on the board (%s): sudo pip3 install jetson-stats"
                      % exc}), flush=True)
    sys.exit(3)
deadline = time.monotonic() + float(sys.argv[2])
while True:
    board = jtop(interval=float(sys.argv[1]))
    try:
        board.start()
        break
    except JtopException as exc:
        if "not active" not in str(exc) or time.monotonic() > deadline:
            print(json.dumps({"error": "jtop: %s (waited %ss)" % (" ".join(str(exc).split()), sys.argv[2])}),
                  flush=True)
            sys.exit(3)
        time.sleep(0.5)
try:
    while board.ok():
        power = board.power
        rails = {name: [v["power"], v["avg"]] for name, v in power.get("rail", {}).items()}
        total = power.get("tot", {})
        if "name" in total:
            rails[total["name"]] = [total["power"], total["avg"]]
        cpus = [[c["online"], 100.0 - c["idle"] if c["online"] and "idle" in c else None,
                 c["freq"]["cur"] if c["online"] and "freq" in c else None] for c in board.cpu["cpu"]]
        gpus = [g for g in board.gpu.values() if g.get("type") == "integrated"]
        gpu = [gpus[0]["status"]["load"], gpus[0]["freq"]["cur"]] if gpus else None
        temps = {n: v["temp"] for n, v in board.temperature.items() if v.get("online", True)}
        ram = board.memory.get("RAM", {})
        swap = board.memory.get("SWAP", {})
        print(json.dumps({"t": time.time(), "rails": rails, "cpus": cpus, "gpu": gpu, "temps": temps,
                          "ram_kb": [ram.get("used"), ram.get("tot")],
                          "swap_kb": [swap.get("used"), swap.get("tot")]}), flush=True)
except JtopException as exc:
    print(json.dumps({"error": "jtop: " + " ".join(str(exc).split())}), flush=True)
    sys.exit(3)
finally:
    board.close()
"""


def _mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024.0


def parse_record(line: str) -> tuple[TegrastatsSample, float | None] | None:
    """One line of the board script: the sample and the board time on it; a line the script printed for an
    error raises HarnessError with jtop's own words (the window stops with it)."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return TegrastatsSample(raw=line.rstrip("\n"), problems=(f"not a jtop sample: {line.strip()[:60]!r}",)), None
    if "error" in record:
        raise HarnessError(record["error"])
    try:
        sample = _sample(line, record)
    except (KeyError, TypeError, ValueError) as exc:
        return TegrastatsSample(raw=line.rstrip("\n"), problems=(f"jtop sample without {exc}",)), None
    return without_impossible(sample), record.get("t")


def _sample(line: str, record: dict) -> TegrastatsSample:
    gpu = record.get("gpu") or [None, None]
    return TegrastatsSample(
        raw=line.rstrip("\n"),
        ram_used_mb=_mb(record["ram_kb"][0]), ram_total_mb=_mb(record["ram_kb"][1]),
        swap_used_mb=_mb(record["swap_kb"][0]), swap_total_mb=_mb(record["swap_kb"][1]),
        cpus=tuple(CpuCore(index, online, load, None if khz is None else khz / 1000.0)
                   for index, (online, load, khz) in enumerate(record["cpus"])),
        gpu_util_pct=gpu[0], gpu_freq_mhz=None if gpu[1] is None else gpu[1] / 1000.0,
        temps_c={name: float(value) for name, value in record["temps"].items()},
        rails=tuple(Rail(name, float(cur), float(avg), None) for name, (cur, avg) in record["rails"].items()),
    )


class JtopSampler:
    """jetson-stats' jtop service read through its Python client on the board."""

    def command(self, board: Board, interval_ms: int) -> str:
        return f"python3 -u -c {shlex.quote(BOARD_SCRIPT)} {interval_ms / 1000:g} {SERVICE_WAIT_S}"

    def parse(self, line: str) -> tuple[TegrastatsSample, float | None] | None:
        return parse_record(line)

"""A farm run against one board: wall time of `pytest suites -k "correctness or throughput"` on one virtual board,
then on three (two profiles) with `-n 3`, and what the controller costs per board while they run: the xdist
controller process (which only gathers) and the workers (each drives its board: SSH, telemetry parsing, results),
CPU seconds per second of wall time and peak memory, read from /proc every 0.2 s.

    python benchmarks/farm_run.py [WORKDIR]

Targets (issue 14): the 3-board run close to one board's wall time; the controller at most 1 % of a core per
board outside the suites' own work. On a 2-core machine three virtual boards share the two cores with the
controller, so their suite work itself is slower than one board's: the figures say so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FARM = {"bench-nx-a": "xavier-nx", "bench-nx-b": "xavier-nx", "bench-onano-c": "orin-nano"}
SMALL = ["-k", "correctness or throughput", "--precision", "fp32", "--batch", "1", "--power-mode", "default",
         "--duration", "2", "--rounds", "1", "-p", "no:cacheprovider", "-q"]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Usage:
    """CPU ticks and peak resident memory per process, the controller's and its workers' apart; `steady` the
    controller's ticks and the time from the run's first result row (every worker started and collected) to its
    last: the span where the boards run and the controller only gathers (no start-up, no end-of-run report)."""

    ticks: dict[int, int] = field(default_factory=dict)
    peak_rss: dict[int, int] = field(default_factory=dict)
    steady: list[tuple[float, int]] = field(default_factory=list)

    def sample(self, pid: int) -> None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            return
        self.ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
        self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss)


def workers_of(pid: int) -> list[int]:
    """The xdist workers of a controller: execnet's children (not the report's chart processes, which fork)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    found = []
    for child in children:
        try:
            if b"exec(eval(" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def timed_run(args: list[str], results: Path) -> tuple[float, Usage, int, str]:
    """(wall s, usage, controller pid, output tail) of a pytest child, sampled until it exits."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "suites", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    usage = Usage()
    started = time.perf_counter()
    written = 0
    while proc.poll() is None:
        usage.sample(proc.pid)
        for worker in workers_of(proc.pid):
            usage.sample(worker)
        size = results.stat().st_size if results.is_file() else 0
        if size > written and size > 400:  # a new result row (the header alone is shorter)
            written = size
            point = (time.perf_counter(), usage.ticks.get(proc.pid, 0))
            usage.steady = [usage.steady[0], point] if usage.steady else [point]
        time.sleep(0.2)
    wall = time.perf_counter() - started
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"pytest exited {proc.returncode}: {output[-3000:]}")
    return wall, usage, proc.pid, output.strip().splitlines()[-1]


def main() -> None:
    from harness.virtual import boards

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="jetson-hil-farm-"))
    root.mkdir(parents=True, exist_ok=True)
    lab = root / "lab.yaml"
    try:
        subprocess.run([sys.executable, "-m", "harness", "virtual", "lab", *(f"{n}={p}" for n, p in FARM.items()),
                        "--tag", "bench", "--out", str(lab)], cwd=REPO, check=True)
        lab.write_text(yaml.safe_dump({"lease_dir": str(root / "leases"), **yaml.safe_load(lab.read_text())}))
        common = [f"--lab={lab}", "--report-dir", str(root / "reports"), *SMALL]
        one, _, _, said = timed_run([*common, "--device", next(iter(FARM)), "--run-id", "one"],
                                    root / "reports" / "one" / "results.csv")
        print(f"one board ({next(iter(FARM))}): {one:.1f} s wall ({said})")
        three, usage, controller, said = timed_run([*common, "--device", "tag:bench", "-n", "3", "--run-id", "three"],
                                                   root / "reports" / "three" / "results.csv")
        print(f"three boards (-n 3): {three:.1f} s wall ({said}), {three / one:.2f}x one board's")
        workers = [pid for pid in usage.ticks if pid != controller]
        own = usage.ticks.get(controller, 0) / TICK
        print(f"xdist controller: {own:.1f} CPU s = {100 * own / three:.1f} % of a core, "
              f"{100 * own / three / len(FARM):.2f} % per board; peak {usage.peak_rss[controller] / 2**20:.0f} MiB")
        (first, before), (last, after) = usage.steady[0], usage.steady[-1]
        steady = (after - before) / TICK / (last - first)
        print(f"xdist controller while the boards run ({last - first:.0f} s, first to last result row: start-up and "
              "report left out): "
              f"{100 * steady:.2f} % of a core, {100 * steady / len(FARM):.2f} % per board")
        driving = sum(usage.ticks[pid] for pid in workers) / TICK
        print(f"workers (each drives its board, suite work included): {driving:.1f} CPU s = "
              f"{100 * driving / three / len(workers):.1f} % of a core per board; peak "
              f"{max(usage.peak_rss[pid] for pid in workers) / 2**20:.0f} MiB each")
    finally:
        for name in FARM:
            boards.down(name)


if __name__ == "__main__":
    main()

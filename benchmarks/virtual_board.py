"""Virtual-board benchmarks: warm `virtual up` to first SSH command, and tegrastats emulator CPU cost.

    python benchmarks/virtual_board.py [PROFILE]

The cold image build is timed by running `hil virtual up PROFILE` after removing the images
(`docker rmi` of jetson-hil/base and jetson-hil/board); see the issue note for the figure.
"""

from __future__ import annotations

import sys
import time

from harness.lab import transport_for
from harness.virtual import boards


def warm_up_to_first_command(profile: str) -> float:
    name = f"bench-{profile}"
    boards.down(name)
    started = time.perf_counter()
    board = boards.up(profile, name)
    with transport_for(board.entry()) as transport:
        transport.run("true", timeout=30).check()
    elapsed = time.perf_counter() - started
    boards.down(name)
    return elapsed


def tegrastats_cpu_share(profile: str, seconds: float = 20.0) -> float:
    """CPU seconds the emulated tegrastats spends per wall second at --interval 100 (1.0 = one core)."""
    name = f"bench-{profile}"
    board = boards.up(profile, name)
    try:
        with transport_for(board.entry()) as transport:
            transport.run("tegrastats --interval 100 --start", timeout=30).check()
            pid = transport.run("cat /run/tegrastats.pid", timeout=10).check().stdout.strip()
            ticks = f"getconf CLK_TCK; cut -d' ' -f14,15 /proc/{pid}/stat"
            first = transport.run(ticks, timeout=10).check().stdout.split()
            time.sleep(seconds)
            last = transport.run(ticks, timeout=10).check().stdout.split()
            transport.run("tegrastats --stop", timeout=10).check()
    finally:
        boards.down(name)
    hz = int(first[0])
    used = (int(last[1]) + int(last[2]) - int(first[1]) - int(first[2])) / hz
    return used / seconds


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "xavier-nx"
    runs = [warm_up_to_first_command(target) for _ in range(3)]
    print(f"warm `virtual up {target}` to first SSH command: {min(runs):.2f}s best, {max(runs):.2f}s worst of 3")
    share = tegrastats_cpu_share(target)
    print(f"tegrastats emulator at 100 ms: {share * 100:.2f}% of one core")

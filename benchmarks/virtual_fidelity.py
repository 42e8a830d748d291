"""Each virtual profile against the real capture it is calibrated from: idle total power (VDD_IN, POM_5V_IN or the
sum of rails) virtual vs real, the per-core load picture with one busy thread, and the RAM line.

    python benchmarks/virtual_fidelity.py [PROFILE ...]

Boards are started one at a time (as `fidelity-<profile>`) and removed afterwards. Prints a Markdown table.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from harness.inventory import Lab
from harness.lab import open_board
from harness.profiles import all_profiles, get_profile
from harness.telemetry.tegrastats import parse_file, parse_line
from harness.virtual import boards

REPO = Path(__file__).resolve().parents[1]


def real_idle(profile: str) -> str:
    """The idle total of the real line the profile's rails are calibrated from."""
    model = get_profile(profile).virtual.model
    path = REPO / re.split(r"[: ]", model.sources["rails"], maxsplit=1)[0]
    if path.is_file():
        (sample,) = parse_file(path)
        return f"{sample.total_power_mw():.0f}"
    rule = get_profile(profile).telemetry.total_power
    total = sum(r.idle_mw for r in model.rails.values()) if rule == "sum" else model.rails[rule].idle_mw
    return f"{total:.0f} (third-party line)"


def lines(board, command: str, count: int) -> list[str]:
    out: list[str] = []
    with board.transport.stream(command, timeout=30) as stream:
        for line in stream.lines():
            out.append(line)
            if len(out) == count:
                break
    return out


def measure(profile: str) -> str:
    name = f"fidelity-{profile}"
    with tempfile.TemporaryDirectory() as leases:
        lab = Lab(lease_dir=Path(leases), boards=[boards.up(profile, name).entry()])
        try:
            with open_board(name, lab) as board:
                idle = [parse_line(line) for line in lines(board, "tegrastats --interval 500", 7)[1:]]
                with board.transport.stream("timeout 5 sh -c 'while :; do :; done'", timeout=15) as burner:
                    busy = parse_line(lines(board, "tegrastats --interval 1000", 3)[-1])
                    burner.stop()
        finally:
            boards.down(name)
    mean = sum(s.total_power_mw() for s in idle) / len(idle)
    cores = ",".join("off" if not c.online else f"{c.load_pct:.0f}%" for c in busy.cpus)
    ram = f"RAM {idle[-1].ram_used_mb:.0f}/{idle[-1].ram_total_mb:.0f}MB"
    if idle[-1].swap_total_mb is not None:
        ram += f" SWAP {idle[-1].swap_used_mb:.0f}/{idle[-1].swap_total_mb:.0f}MB"
    rule = get_profile(profile).telemetry.total_power
    return f"| {profile} | {rule} | {mean:.0f} | {real_idle(profile)} | [{cores}] | {ram} |"


def main() -> int:
    profiles = sys.argv[1:] or sorted(all_profiles())
    print("| profile | total | idle virtual mW | idle real mW | one busy thread | memory |")
    print("| --- | --- | --- | --- | --- | --- |")
    for profile in profiles:
        print(measure(profile), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

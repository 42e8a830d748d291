"""Modeled power of a virtual board under the throughput suite: does it rise with the work done and differ between
power modes by more than the noise? Runs `pytest suites --device virtual:PROFILE -k throughput --power-mode all`
and prints, per mode and phase, the mean power with its spread across rounds, the FPS, and the board's idle power
read by tegrastats before the run.

    python benchmarks/virtual_power.py [PROFILE] [--duration S] [--rounds N]

Target (issue 15): power under the bench above idle in every mode, and the modes apart by more than the spread.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def idle_power_w(profile: str) -> float:
    """Mean total power of 5 tegrastats samples of the idle board (started if needed, left running)."""
    code = ("from harness.inventory import Lab; from harness.lab import load_providers, open_board\n"
            f"load_providers()\nwith open_board('virtual:{profile}', Lab()) as b:\n"
            "    s = [b.telemetry_sample(interval_ms=500) for _ in range(5)]\n"
            "    print(sum(x.total_power_mw(b.profile.telemetry.total_power) for x in s) / len(s) / 1000)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=900,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="orin-nano")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    idle = idle_power_w(args.profile)
    with tempfile.TemporaryDirectory(prefix="virtual-power-") as tmp:
        command = [sys.executable, "-m", "pytest", "suites", f"--device=virtual:{args.profile}", "-k", "throughput",
                   "--power-mode", "all", "--precision", "fp32", "--batch", "1", "--duration", str(args.duration),
                   "--rounds", str(args.rounds), "--report-dir", tmp, "--run-id", "power", "-q",
                   "-p", "no:cacheprovider"]
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
        results = Path(tmp) / "power" / "results.csv"
        if not results.is_file():
            print(run.stdout[-3000:], run.stderr[-3000:])
            return 1
        rows = pd.read_csv(results)
    wanted = rows[rows.metric.isin(["power_mean", "raw_fps", "pipeline_fps"])]
    table = wanted.pivot_table(index=["power_mode", "phase"], columns="metric", values="value", aggfunc="first")
    spread = wanted[wanted.metric == "power_mean"].set_index(["power_mode", "phase"])["spread"]
    table["power_spread"] = spread
    print(f"{args.profile}: idle {idle:.2f} W (modeled, tegrastats before the run); suite rc {run.returncode}")
    print(table.round(3).to_string())
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())

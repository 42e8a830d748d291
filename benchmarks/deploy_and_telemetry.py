"""Issue 5 benchmarks on a virtual board: redeploy time of an unchanged module, and the cost of telemetry.

    python benchmarks/deploy_and_telemetry.py [PROFILE] [--rounds N] [--duration S]

1. Redeploy: deploy once, then time N deploys of the unchanged module (nothing copied, nothing
   restarted; the target is < 2 s).
2. Telemetry overhead: the module's bench (raw + pipeline FPS) with tegrastats sampling at 10 Hz
   and without, alternating (with, without, with, ...) so that drift hits both alike; reports the
   mean FPS of each and the ratio with/without (target >= 0.99).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from harness.deploy import ServiceSpec, deploy_native
from harness.inventory import Lab
from harness.lab import load_providers, open_board
from harness.telemetry.window import TelemetryWindow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", nargs="?", default="xavier-nx")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    load_providers()
    with open_board(f"virtual:{args.profile}", Lab(), purpose="benchmark") as board:
        deploy_native(board, ServiceSpec()).close()
        redeploys = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            handle = deploy_native(board, ServiceSpec())
            redeploys.append(time.perf_counter() - started)
            assert not handle.report.changed, handle.report
        handle.api("/stop", "POST")  # the bench gets the board to itself
        bench = ["bench", "--duration", str(args.duration), "--warmup", "20"]
        fps: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for _ in range(args.rounds):
            for mode in ("with", "without"):
                if mode == "with":
                    with TelemetryWindow(board, interval_ms=100) as window:
                        result = handle.run_module(bench, timeout=60 + 4 * args.duration).check()
                    samples = len(window.samples())
                else:
                    result = handle.run_module(bench, timeout=60 + 4 * args.duration).check()
                doc = json.loads(result.stdout)
                fps[mode].append((doc["raw_fps"], doc["pipeline_fps"]))
        handle.api("/start", "POST")
        handle.close()

    def mean(mode: str, index: int) -> float:
        return statistics.mean(v[index] for v in fps[mode])

    print(json.dumps({
        "profile": args.profile,
        "redeploy_s": {"min": round(min(redeploys), 3), "median": round(statistics.median(redeploys), 3),
                       "max": round(max(redeploys), 3)},
        "telemetry_samples_last_window": samples,
        "raw_fps": {"with_10hz": round(mean("with", 0), 2), "without": round(mean("without", 0), 2),
                    "ratio": round(mean("with", 0) / mean("without", 0), 4)},
        "pipeline_fps": {"with_10hz": round(mean("with", 1), 2), "without": round(mean("without", 1), 2),
                         "ratio": round(mean("with", 1) / mean("without", 1), 4)},
        "rounds": fps,
    }, indent=2))


if __name__ == "__main__":
    main()

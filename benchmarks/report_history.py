"""Report generation and history import at farm scale: a synthetic year of nightly runs of 20 boards (365 run
folders, about one million rows), imported into a SQLite history (rows/s), then the report of the last night
with the trend over the whole history, timed and its peak memory measured in a process of its own; and the
baseline lookup of `--baseline latest` over that year (one board's, as each farm worker makes it, and all 20
boards', as the night's report makes it), every figure's verdict row included (3 % of tests failed).

    python benchmarks/report_history.py [WORKDIR]

Targets (issue 13): report under 10 s and under 1 GiB on a 2-core machine.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.results.table import FIELDS
from harness.results.verdicts import VERDICT

BOARDS = [(f"{profile}-{i:02d}", profile) for i, profile in
          enumerate(["xavier-nx", "orin-nano", "agx-orin", "orin-nx", "nano"] * 4)]
MODES, PRECISIONS, BATCHES = ("MAXN", "15W"), ("fp32", "fp16", "int8"), (1, 4, 8)
THROUGHPUT = (("raw", "raw_fps", "fps", "measured"), ("raw", "latency_p50", "ms", "measured"),
              ("raw", "latency_p99", "ms", "measured"), ("pipeline", "pipeline_fps", "fps", "measured"),
              ("pipeline", "power_mean", "W", "measured"), ("pipeline", "energy_per_frame", "J/frame", "measured"),
              ("pipeline", "fps_per_w", "fps/W", "measured"))
OTHER = [("test_correctness", "map50", "ratio")] * 2 + [("test_resilience", f"messages_{m}", "messages")
                                                       for m in ("expected", "delivered", "missing", "duplicates",
                                                                 "misordered", "unexpected", "dropped_overflow",
                                                                 "module_dropped", "outbox_peak")]
NIGHTS = 365


def write_history(root: Path) -> list[Path]:
    """365 run folders, each a night of all 20 boards; returns them oldest first."""
    rng = random.Random(13)
    start = dt.datetime(2025, 12, 1, 2, 0, tzinfo=dt.timezone.utc)
    folders = []
    for night in range(NIGHTS):
        run = f"nightly-{night:03d}"
        folder = root / run
        folder.mkdir(parents=True, exist_ok=True)
        at = (start + dt.timedelta(days=night)).isoformat(timespec="milliseconds")
        with (folder / "results.csv").open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(FIELDS)
            for board, profile in BOARDS:
                for mode in MODES:
                    for precision in PRECISIONS:
                        for batch in BATCHES:
                            test = f"test_throughput[{mode}-b{batch}-{precision}]"
                            for phase, metric, unit, source in THROUGHPUT:
                                writer.writerow([run, board, profile, mode, precision, batch, "tensorrt", "cuda", "",
                                                 "test_throughput", test, phase, metric,
                                                 round(rng.uniform(10, 400), 3), 0.02, unit, source, at])
                            writer.writerow([run, board, profile, mode, precision, batch, "tensorrt", "cuda", "",
                                             "test_throughput", test, "", VERDICT, float(rng.random() > 0.03), "",
                                             "verdict", "measured", at])
                for suite, metric, unit in OTHER:
                    writer.writerow([run, board, profile, "", "fp32", "", "tensorrt", "cuda", "", suite,
                                     f"{suite}_case", "", metric, rng.randint(0, 900), "", unit, "measured", at])
        folders.append(folder)
    return folders


def report_in_own_process(last: Path, baseline: Path, db: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of `hil report LAST --baseline BASELINE --history DB` as a user runs it: a process of its
    own, timed from its start (interpreter and imports included) to its exit."""
    command = [sys.executable, "-m", "harness", "report", str(last), "--baseline", str(baseline), "--history", str(db),
               "--out", str(last.parent / "out")]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: the synthetic nights regress against each other, as random figures do
        raise SystemExit(f"hil report failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    from harness.history import History
    from harness.report import load_run

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="jetson-hil-history-"))
    started = time.perf_counter()
    folders = write_history(root / "runs")
    print(f"wrote {len(folders)} nightly runs in {time.perf_counter() - started:.1f} s")
    history = History(root / "history.sqlite")
    rows = 0
    started = time.perf_counter()
    for index, folder in enumerate(folders, 1):
        rows += history.import_run(load_run(folder))
        if index % 73 == 0:
            print(f"  imported {index}/{len(folders)} runs, {rows} rows", flush=True)
    took = time.perf_counter() - started
    print(f"import: {rows} rows in {took:.1f} s = {rows / took:,.0f} rows/s "
          f"(peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    seconds, peak = report_in_own_process(folders[-1], folders[-2], root / "history.sqlite")
    print(f"report of the last night (20 boards) with the trend over {rows} rows: {seconds:.1f} s, "
          f"peak {peak:.0f} MiB")
    baseline_lookup(history, root / "runs", folders[-1].name)


def baseline_lookup(history: object, report_dir: Path, tonight: str) -> None:
    """`--baseline latest` as tonight's run resolves it, its folder excluded: per figure the newest passing one."""
    from harness.gates import load_policy, resolve_baseline

    metrics = load_policy(Path(__file__).resolve().parents[1] / "suites" / "regression.yaml").metrics
    for boards in ({BOARDS[0][0]}, {board for board, _ in BOARDS}):
        started = time.perf_counter()
        found = resolve_baseline("latest", report_dir, boards=boards, metrics=metrics, exclude={tonight},
                                 history=history)  # type: ignore[arg-type]
        print(f"baseline lookup, {len(boards)} board(s): {len(found.rows)} figures from {len(found.runs)} runs in "
              f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()

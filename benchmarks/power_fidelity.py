"""The board model's power under load against real loaded tegrastats captures: every line of every capture in
tests/data/jetson/tegrastats/loaded/captures.yaml, fed to the model with its own state (cores, loads, clocks).

    python benchmarks/power_fidelity.py          # the Markdown table: real vs model total and GPU rail per line
    python benchmarks/power_fidelity.py --fit    # the least-squares cpu_core_w, gpu_w, memory_w per profile, and
                                                 # each capture held out of its profile's fit

Targets (issue 23): total within 15 % and the GPU-carrying rail within 25 % (tests/test_power_under_load.py, whose
EXCEPTIONS name the lines that cannot hold and why). The captures are the calibration set.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.telemetry.tegrastats import TegrastatsSample, parse_file  # noqa: E402
from tests.test_power_under_load import (  # noqa: E402
    LOADED,
    Row,
    captures,
    compare,
    power_model,
    rows,
    spec_of,
    work_of,
)

COEFFICIENTS = ("cpu_core_w", "gpu_w", "memory_w")
RAIL_FLOOR_MW = 100.0  # a rail of a few tens of mW would outweigh the watts of the others


def table(lines: list[Row]) -> str:
    out = ["| profile | mode | load | capture:line | real W | model W | ratio | real GPU rail W | model GPU W "
           "| ratio |", "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in lines:
        c = row.capture
        gpu_ratio = f"{row.model_gpu / row.real_gpu:.2f}" if row.real_gpu else "-"
        out.append(f"| {c['profile']} | {c['mode']} | {c['load']} | {c['file']}:{row.line} "
                   f"| {row.real_total / 1000:.2f} | {row.model_total / 1000:.2f} "
                   f"| {row.model_total / row.real_total:.2f} "
                   f"| {row.real_gpu / 1000:.2f} | {row.model_gpu / 1000:.2f} | {gpu_ratio} |")
    return "\n".join(out)


def with_coefficients(profile: str, values: dict[str, float]) -> dict:
    spec = spec_of(profile)
    return {**spec, "model": {**spec["model"], **values}}


def _residuals(spec: dict, sample: TegrastatsSample) -> list[tuple[float, float]]:
    """(model, real) mW of what the fit matches on one line: the total and every rail the model loads."""
    real_total, model_total, _, _ = compare(spec, sample)
    model = power_model.rails_mw(spec, work_of(sample))
    loaded = [name for name, rail in spec["model"]["rails"].items() if rail["loads"] and name in sample.rails_mw]
    return [(model_total, real_total)] + [(model[name], sample.rails_mw[name]) for name in loaded]


def fit(profile: str, files: set[str]) -> dict[str, float]:
    """Non-negative least squares of the relative errors of the total and of every rail the model loads (each over
    at least RAIL_FLOOR_MW) over the captures in `files`, each capture weighing the same however many lines it has.
    The model is linear in its coefficients, so each one's effect is the model's own answer with that coefficient
    at 1 W and the others at 0."""
    lines = [(capture["file"], sample) for capture in captures() if capture["profile"] == profile
             and capture["file"] in files for sample in parse_file(LOADED / capture["file"])]
    base_spec = with_coefficients(profile, dict.fromkeys(COEFFICIENTS, 0.0))
    unit_specs = [with_coefficients(profile, {k: float(k == name) for k in COEFFICIENTS}) for name in COEFFICIENTS]
    design, target = [], []
    for file, sample in lines:
        weight = sum(name == file for name, _ in lines) ** -0.5
        base = _residuals(base_spec, sample)
        units = [_residuals(spec, sample) for spec in unit_specs]
        for i, (model, real) in enumerate(base):
            scale = weight / max(real, RAIL_FLOOR_MW)
            design.append([(unit[i][0] - model) * scale for unit in units])
            target.append((real - model) * scale)
    a, b = np.array(design), np.array(target)
    best, best_cost = np.zeros(len(COEFFICIENTS)), float(b @ b)
    for size in range(1, len(COEFFICIENTS) + 1):  # the non-negative optimum is a least-squares fit on some subset
        for subset in combinations(range(len(COEFFICIENTS)), size):
            x = np.zeros(len(COEFFICIENTS))
            x[list(subset)] = np.linalg.lstsq(a[:, subset], b, rcond=None)[0]
            cost = float((a @ x - b) @ (a @ x - b))
            if (x >= 0).all() and cost < best_cost:
                best, best_cost = x, cost
    return {name: round(float(value), 3) for name, value in zip(COEFFICIENTS, best, strict=True)}


def report_fit() -> None:
    by_profile: dict[str, set[str]] = {}
    for capture in captures():
        by_profile.setdefault(capture["profile"], set()).add(capture["file"])
    for profile, files in sorted(by_profile.items()):
        print(f"{profile}: fitted on {sorted(files)}: {fit(profile, files)}")
        for held in sorted(files) if len(files) > 1 else []:
            values = fit(profile, files - {held})
            spec_for: Callable[[str], dict] = lambda name, v=values: with_coefficients(name, v)  # noqa: E731
            ratios = [(row.model_total / row.real_total, row.model_gpu / row.real_gpu if row.real_gpu else None)
                      for row in rows(spec_for) if row.capture["file"] == held]
            shown = ", ".join(f"{t:.2f}/{g:.2f}" if g else f"{t:.2f}/-" for t, g in ratios)
            print(f"  held out {held}: fitted on the rest {values}; model/real total/GPU rail per line: {shown}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="fit the coefficients and report held-out captures")
    if parser.parse_args().fit:
        report_fit()
    else:
        print(table(rows()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job end to end: `pytest suites --device=virtual:PROFILE` deploys, measures and writes results.

Runs the real suites in a child pytest against a virtual Orin Nano (a profile the other virtual
tests don't lease), with short measurements to keep the harness's own test run quick.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.virtual import docker_or_skip

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.virtual
def test_suites_deploy_measure_and_record_every_observation(tmp_path: Path) -> None:
    docker_or_skip()
    junit = tmp_path / "junit.xml"
    command = [sys.executable, "-m", "pytest", "suites", "--device=virtual:orin-nano",
               "--report-dir", str(tmp_path), "--run-id", "e2e", "--duration", "1.5", "--power-mode", "default",
               f"--junitxml={junit}", "-p", "no:cacheprovider", "-q"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"results.csv: {tmp_path / 'e2e' / 'results.csv'}" in done.stdout

    with (tmp_path / "e2e" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    metrics = {(r["suite"], r["metric"]) for r in rows}
    assert {("test_correctness", "golden_match"), ("test_correctness", "map50")} <= metrics
    throughput = ("raw_fps", "pipeline_fps", "latency_p99", "energy", "fps_per_w")
    assert {("test_throughput", m) for m in throughput} <= metrics
    sources = {r["metric"]: r["source"] for r in rows}
    assert sources["raw_fps"] == "measured" and sources["energy"] == "modeled"
    assert all(r["power_mode"] for r in rows if r["suite"] == "test_throughput")

    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert {"board", "l4t", "jetpack", "model_sha256", "harness_version", "onnxruntime"} <= set(properties)
    assert (tmp_path / "e2e" / "benchmark.json").is_file()

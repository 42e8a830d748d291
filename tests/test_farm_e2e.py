"""A farm run as a lab runs it: three virtual boards of two profiles in a lab.yaml, `pytest suites --lab …
--device tag:farm -n 3`, every board in its own xdist worker with its own lease, one run folder; and a board
killed mid-run (`docker kill`) that fails only its own tests and ends up quarantined."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.inventory import load_lab
from harness.profiles import all_profiles
from tests.suite_runs import outcomes
from tests.virtual import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
FARM = {"farm-nx-a": "xavier-nx", "farm-nx-b": "xavier-nx", "farm-onano-c": "orin-nano"}
SMALL = ["--precision", "fp32", "--batch", "1", "--power-mode", "default", "--duration", "4", "--rounds", "1"]
RUN_TIMEOUT_S = 900

pytestmark = pytest.mark.virtual


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """lab.yaml of three running virtual boards tagged `farm` (`hil virtual lab`), with a lease folder of its own."""
    docker_or_skip()
    from harness.virtual import boards

    root = tmp_path_factory.mktemp("farm")
    lab = root / "lab.yaml"
    try:
        subprocess.run([sys.executable, "-m", "harness", "virtual", "lab", *(f"{n}={p}" for n, p in FARM.items()),
                        "--tag", "farm", "--out", str(lab)], cwd=REPO, check=True, timeout=RUN_TIMEOUT_S)
        lab.write_text(yaml.safe_dump({"lease_dir": str(root / "leases"), **yaml.safe_load(lab.read_text())}))
        yield lab
    finally:
        for name in FARM:
            boards.down(name)


def farm_run(lab: Path, run_id: str, *args: str, workers: int = 3) -> subprocess.Popen[str]:
    report = lab.parent / "reports"
    command = [sys.executable, "-m", "pytest", "suites", f"--lab={lab}", "--device=tag:farm", "-n", str(workers),
               "--report-dir", str(report), "--run-id", run_id, f"--junitxml={report / run_id / 'junit.xml'}",
               "-p", "no:cacheprovider", "-q", *SMALL, *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def board_rows(folder: Path) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    results = folder / "results.csv"
    if results.is_file():
        with results.open() as handle:
            for row in csv.DictReader(handle):
                found.setdefault(row["board"], []).append(row)
    return found


def test_three_boards_run_at_once_into_one_run_folder(farm: Path) -> None:
    store = load_lab(farm, all_profiles()).leases()
    started = time.monotonic()
    run = farm_run(farm, "farm-all", "-k", "correctness or throughput")
    output, _ = run.communicate(timeout=RUN_TIMEOUT_S)
    took = time.monotonic() - started
    assert run.returncode == 0, output[-4000:]
    folder = farm.parent / "reports" / "farm-all"
    rows = board_rows(folder)
    assert sorted(rows) == sorted(FARM), sorted(rows)
    for board, profile in FARM.items():  # every board ran both suites, under its own profile
        assert {r["suite"] for r in rows[board]} >= {"test_correctness", "test_throughput"}, board
        assert {r["profile"] for r in rows[board]} == {profile}
        junit = folder / f"junit-{board}.xml"
        properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
        assert properties["board"] == board and properties["profile"] == profile
        assert set(outcomes(junit).values()) == {"passed"}, outcomes(junit)
        # each worker held the board's lease for its session and gave it back
        assert store.holder(board) is None and store.record(board).last_run == "farm-all"
    benchmarks = json.loads((folder / "benchmark.json").read_text())
    assert {b["extra_info"]["board"] for b in benchmarks["benchmarks"]} == set(FARM)
    report = json.loads((folder / "report.json").read_text())
    assert sorted(d["board"] for d in report["devices"]) == sorted(FARM)
    assert all(d["verdicts"] and set(d["verdicts"].values()) == {"passed"} for d in report["devices"])
    print(f"3 boards, correctness and throughput: {took:.0f} s")


def test_a_board_killed_mid_run_fails_only_its_own_tests_and_is_quarantined(farm: Path) -> None:
    """Also one worker more than boards: it finds every board held by its own run and skips, saying so."""
    from harness.virtual import boards
    from harness.virtual.engine import docker_client

    victim = "farm-onano-c"
    store = load_lab(farm, all_profiles()).leases()
    folder = farm.parent / "reports" / "farm-kill"
    # the throughput test after correctness keeps the victim busy for seconds after its first row
    run = farm_run(farm, "farm-kill", "-k", "correctness or throughput", workers=4)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while victim not in board_rows(folder):  # stopped once it has measured something: mid-run
            assert run.poll() is None and time.monotonic() < deadline, "the victim never wrote a row"
            time.sleep(0.1)
        container = docker_client().containers.get(victim)
        container.pause()  # frozen at once, so it cannot finish its tests while the kill lands
        container.kill()
        output, _ = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, output[-4000:]
    verdicts = outcomes(folder / f"junit-{victim}.xml")
    assert "failed" in verdicts.values() or "error" in verdicts.values(), verdicts
    cases = ET.parse(folder / f"junit-{victim}.xml").iter("testcase")
    reasons = [child.get("message", "") for case in cases for child in case if child.tag in ("failure", "error")]
    assert reasons and all("board lost mid-run" in reason for reason in reasons), reasons
    for board in set(FARM) - {victim}:
        assert set(outcomes(folder / f"junit-{board}.xml").values()) == {"passed"}, board
    merged = [child for case in ET.parse(folder / "junit.xml").iter("testcase") for child in case]
    spare = [c.get("message", "") for c in merged if c.tag == "skipped"]
    assert spare and all("no board for this worker" in m and "this run holds them all" in m for m in spare), spare
    assert sorted(junit.name for junit in folder.glob("junit-*.xml")) == sorted(f"junit-{b}.xml" for b in FARM)
    assert [r["metric"] for r in board_rows(folder)[victim] if r["test"] == "board_lost"] == ["board_lost"]
    quarantine = store.quarantined(victim)
    assert quarantine is not None and "lost mid-run" in quarantine.reason
    assert store.record(victim).infra_failures == 1 and store.holder(victim) is None
    boards.up(FARM[victim], victim)  # back for any later test of this module; its quarantine stays until released
    status = subprocess.run([sys.executable, "-m", "harness", "farm", "status", f"--lab={farm}", "--format", "json"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    shown = {s["board"]: s for s in json.loads(status.stdout)}
    assert shown[victim]["health"] == "quarantined" and "lost mid-run" in shown[victim]["quarantine"]["reason"]
    assert {shown[b]["health"] for b in set(FARM) - {victim}} == {"ok"}

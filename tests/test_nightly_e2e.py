"""Two nights of the nightly job's own command line (scripts/nightly.sh, which both jobs of nightly.yml run) on a farm
of two virtual boards sharing one results history, each night in a fresh report folder as a CI checkout is: night 1
passes and is every board's baseline; night 2 deploys the module copy whose engine takes twice as long and turns
red, its report.md naming each regressed figure per board. Then `hil floors suggest` over that history gives lab
floors that fail the slower module without any --baseline.

The history is SQLite here and in CI; JETSON_HIL_NIGHTLY_HISTORY=postgresql runs the same nights against a real
PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.module_copies import SLOWER_ENGINE, module_copy
from tests.virtual import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
FARM = {"night-nx": "xavier-nx", "night-onano": "orin-nano"}
#: the virtual job's options, the throughput suite only (the gate lives there): each night is a few minutes
SMALL = ["-k", "throughput", "--precision", "fp32", "--batch", "1", "--power-mode", "default", "--duration", "6",
         "--rounds", "3", "-q"]
NIGHT_TIMEOUT_S = 900

pytestmark = pytest.mark.virtual


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """lab.yaml of two running virtual boards tagged `nightly` (`hil virtual lab`), with a lease folder of its own."""
    docker_or_skip()
    from harness.virtual import boards

    root = tmp_path_factory.mktemp("nightly")
    lab = root / "lab.yaml"
    try:
        subprocess.run([sys.executable, "-m", "harness", "virtual", "lab", *(f"{n}={p}" for n, p in FARM.items()),
                        "--tag", "nightly", "--out", str(lab)], cwd=REPO, check=True, timeout=NIGHT_TIMEOUT_S)
        lab.write_text(yaml.safe_dump({"lease_dir": str(root / "leases"), **yaml.safe_load(lab.read_text())}))
        yield lab
    finally:
        for name in FARM:
            boards.down(name)


@pytest.fixture(scope="module")
def history(farm: Path, request: pytest.FixtureRequest) -> str:
    """The farm's results history: a SQLite file, or a PostgreSQL server's URL when asked for."""
    if os.environ.get("JETSON_HIL_NIGHTLY_HISTORY") == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(farm.parent / "history.sqlite")


def night(lab: Path, history: str, run_id: str, *args: str | Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One night as the workflow runs it, in a report folder of its own (a fresh checkout has no earlier runs)."""
    reports = lab.parent / f"checkout-{run_id}" / "reports"
    env = {**os.environ, "LAB": str(lab), "SELECTOR": "tag:nightly", "WORKERS": "2", "RUN_ID": run_id,
           "HISTORY": history, "REPORT_DIR": str(reports), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "scripts" / "nightly.sh"), *SMALL, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=NIGHT_TIMEOUT_S, check=False)
    return done, reports / run_id


def test_a_slower_module_turns_the_night_red_on_every_board(farm: Path, history: str, tmp_path: Path) -> None:
    first, folder = night(farm, history, "night-1")
    assert first.returncode == 0, first.stdout[-4000:]
    report = (folder / "report.md").read_text()
    assert report.splitlines()[2].startswith("**Verdict: PASSED**"), report[:2000]
    for board in FARM:  # nothing to judge against yet: each board's first night is its baseline
        assert f"- {board}: first run: this is its baseline" in report, report[:3000]

    slower = module_copy(tmp_path, SLOWER_ENGINE)
    second, folder = night(farm, history, "night-2", "--module", slower)
    assert second.returncode == 1, second.stdout[-4000:]
    lines = (folder / "report.md").read_text().splitlines()
    assert lines[2].startswith("**Verdict: FAILED**") and "figures regressed" in lines[2], lines[:10]
    for board in FARM:  # each board names its regressed figures, against night 1 from the history
        start = lines.index(f"Regressed on {board}:")
        regressed = [line for line in lines[start + 2:] if line.startswith("- ")][:20]
        assert any("raw_fps [raw]: baseline" in line and "baseline run night-1" in line for line in regressed), \
            lines[start:start + 12]

    suggest = subprocess.run([sys.executable, "-m", "harness", "floors", "suggest", "--history", history],
                             cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert suggest.returncode == 0, suggest.stderr
    floors = yaml.safe_load(suggest.stdout)["floors"]
    assert set(floors) == set(FARM), suggest.stdout  # from night 1 alone: night 2 failed, it sets no floor
    with_floors = farm.parent / "lab-with-floors.yaml"
    with_floors.write_text(yaml.safe_dump({**yaml.safe_load(farm.read_text()), "floors": floors}))
    junit = farm.parent / "floors-only" / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "suites", f"--lab={with_floors}", "--device=tag:nightly",
                           "-n", "2", "--report-dir", str(junit.parent), "--run-id", "floors", f"--junitxml={junit}",
                           "--module", str(slower), "-p", "no:cacheprovider", *SMALL], cwd=REPO, capture_output=True,
                          text=True, timeout=NIGHT_TIMEOUT_S, check=False)
    assert done.returncode == 1, done.stdout[-4000:]
    for board in FARM:  # no --baseline: the lab's floors alone fail each board
        failures = [f.get("message", "") for f in ET.parse(junit.with_name(f"junit-{board}.xml")).iter("failure")]
        assert any("below the lab's floor: raw_fps" in message for message in failures), failures or done.stdout[-3000:]

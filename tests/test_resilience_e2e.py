"""The offline-resilience suite end to end on a virtual board, and failing for the reasons it names.

`pytest suites/test_resilience.py --device=virtual:orin-nano` runs in a child pytest as a lab would run it: the
whole suite with the module as it is; then a module whose outbox acknowledges before the broker's PUBACK
(tests/module_copies.py), which must fail with a gap report; a harness SIGKILLed mid-outage, whose cut the board's
watchdog must remove by its deadline; and bad input (an uplink host that does not resolve, a broker that refuses,
--outage-scale 0, a board without iptables), each one clear line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.faults import LinkCut
from harness.faults.link_cut import CHAIN
from harness.lab import connected_board
from tests.module_copies import EARLY_ACK, module_copy
from tests.sshd import wait_until
from tests.suite_runs import PROFILE, REPO, outcomes, rows, suites

RESILIENCE = "suites/test_resilience.py"

pytestmark = pytest.mark.virtual


def fault_rules(board_name: str) -> str:
    from harness.virtual.engine import docker_client

    container = docker_client().containers.get(board_name)
    found = container.exec_run(["sh", "-c", "iptables -S; iptables -t nat -S; tc qdisc show"]).output.decode()
    return "\n".join(line for line in found.splitlines() if "JETSON_HIL" in line or "netem" in line)


def test_the_suite_passes_on_a_virtual_board_and_leaves_it_as_it_was(board_name: str, tmp_path: Path) -> None:
    started = time.monotonic()
    done, junit = suites(tmp_path, "resilience", tests=RESILIENCE)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    results = outcomes(junit)
    assert set(results.values()) == {"passed"} and len(results) == 9, results
    table = rows(tmp_path, "resilience")
    by_test: dict[str, dict[str, float]] = {}
    for row in table:
        by_test.setdefault(row["test"], {})[f"{row['metric']}:{row['phase']}"] = float(row["value"])
    assert len(by_test) == 9
    for name, figures in by_test.items():
        assert figures["messages_missing:"] == 0 and figures["messages_expected:"] > 0, (name, figures)
        assert figures["module_fps:offline"] > 0 and "drain_s:" in figures, (name, figures)
    overflow = by_test["test_outage_longer_than_the_outbox_holds"]
    assert overflow["messages_dropped_overflow:"] == overflow["messages_module_dropped:"] > 0
    timelines = list((tmp_path / "resilience" / "resilience").glob("*.csv"))
    assert len(timelines) == 9, timelines
    for timeline in timelines:
        lines = timeline.read_text().splitlines()
        assert lines[0] == "second,link,events,received,outbox_depth,fps", timeline
        assert any(",down," in line or ",degraded," in line for line in lines), timeline
    assert "fault_method" in junit.read_text() and 'value="relay"' in junit.read_text()  # no netem in this kernel
    assert fault_rules(board_name) == ""
    print(f"resilience suite: {took:.0f} s")


def test_an_outbox_that_acknowledges_early_fails_with_a_gap_report(board_name: str, tmp_path: Path) -> None:
    broken = module_copy(tmp_path, EARLY_ACK)
    done, junit = suites(tmp_path, "early-ack", "--module", broken, "-k", "module_killed", tests=RESILIENCE)
    assert done.returncode == 1, done.stdout[-3000:]
    assert list(outcomes(junit).values()) == ["failed"]
    gap = re.search(r"missing (\d+), .*missing seqs: ([0-9, -]+)", done.stdout)
    assert gap and int(gap.group(1)) > 0, done.stdout[-3000:]


def test_a_killed_harness_leaves_no_fault_after_the_watchdog_deadline(board_name: str, tmp_path: Path) -> None:
    watchdog_s = 8.0
    command = [sys.executable, "-m", "pytest", RESILIENCE, f"--device=virtual:{PROFILE}", "-k", "30m-off",
               "--outage-scale", "3", "--watchdog-timeout", str(watchdog_s), "--report-dir", str(tmp_path),
               "-p", "no:cacheprovider", "-q"]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_until(lambda: CHAIN in fault_rules(board_name) or child.poll() is not None, 300, "the suite's link cut")
        assert child.poll() is None, f"the suite ended (exit {child.returncode}) before its outage"
        os.killpg(child.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    wait_until(lambda: fault_rules(board_name) == "", watchdog_s + 15, "the watchdog to remove the link cut")
    gone_after = time.monotonic() - killed
    print(f"fault rules removed {gone_after:.1f} s after the harness was killed (watchdog {watchdog_s:g} s)")


@pytest.mark.parametrize(("uplink", "says"), [
    ("{host: no-such-host.invalid}", "cannot resolve the uplink host 'no-such-host.invalid'"),
    ("{host: 127.0.0.1, port: 9}", "uplink broker 127.0.0.1:9 refused the connection"),
])
def test_an_uplink_that_cannot_be_had_is_one_line(board_name: str, tmp_path: Path, uplink: str, says: str) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"uplink: {uplink}\n")
    done, junit = suites(tmp_path, "bad-uplink", "--lab", lab, "-k", "flapping or module_killed", tests=RESILIENCE)
    assert done.returncode == 1
    assert sorted(outcomes(junit).values()) == ["error", "skipped"], outcomes(junit)  # reported once, in setup
    failures = [line for line in done.stdout.splitlines() if says in line]
    assert failures and "Traceback" not in done.stdout, done.stdout[-3000:]


def test_a_zero_outage_scale_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", RESILIENCE, "--outage-scale", "0", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 4
    assert "--outage-scale must be more than 0" in done.stderr and "Traceback" not in done.stderr


def test_a_board_without_iptables_is_one_line(board_name: str) -> None:
    from harness.virtual import boards
    from harness.virtual.engine import docker_client

    container = docker_client().containers.get(board_name)
    moved = container.exec_run(["sh", "-c", "mv /usr/sbin/iptables /usr/sbin/iptables.away"])
    assert moved.exit_code == 0, moved.output
    try:
        board = boards.find(board_name)
        assert board is not None
        with connected_board(board.entry()) as connected, pytest.raises(HarnessError) as refused:
            LinkCut(connected, "172.17.0.1", 1883)
    finally:
        container.exec_run(["sh", "-c", "mv /usr/sbin/iptables.away /usr/sbin/iptables"])
    assert str(refused.value).startswith(f"{board_name} has no iptables: cutting the uplink needs it")

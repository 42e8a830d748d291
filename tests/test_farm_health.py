"""Health checks before a board is used, on a virtual board reached over SSH: a fault rule left on it fails the
check, a board that can be power-cycled is cycled once and used, one that cannot is quarantined until
`hil devices --release`; a board failing for infrastructure reasons session after session is quarantined too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.board import Board
from harness.board.health import health_problems
from harness.errors import LeaseError
from harness.inventory import Lab, load_lab
from harness.lab import board_entry, transport_for
from harness.profiles import all_profiles, get_profile
from tests.virtual import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
NAME = "health-nx"
LEFTOVER = "iptables -N JETSON_HIL_LEFTOVER"

pytestmark = pytest.mark.virtual


@pytest.fixture(scope="module")
def entry() -> Iterator[dict]:
    docker_or_skip()
    from harness.virtual import boards

    try:
        yield boards.up("xavier-nx", NAME).entry(tags=("health",)).model_dump(mode="json", exclude_none=True)
    finally:
        boards.down(NAME)


def make_lab(tmp_path: Path, entry: dict, **settings: object) -> Lab:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"lease_dir": str(tmp_path / "leases"), **settings, "boards": [entry]}))
    return load_lab(path, all_profiles())


def on_board(lab: Lab, command: str) -> str:
    transport = transport_for(lab.boards[0])
    with transport:
        return transport.run(command, timeout=30).check().stdout


@pytest.fixture
def leftover(entry: dict, tmp_path: Path) -> Iterator[None]:
    """A firewall chain of ours left on the board, as a fault that was never undone leaves one."""
    lab = make_lab(tmp_path, entry)
    on_board(lab, LEFTOVER)
    yield
    on_board(lab, "iptables -X JETSON_HIL_LEFTOVER 2>/dev/null || true")


def test_a_healthy_board_passes_and_a_leftover_fault_fails_the_check(entry: dict, tmp_path: Path) -> None:
    lab = make_lab(tmp_path, entry)
    transport = transport_for(lab.boards[0])
    with transport:
        board = Board(NAME, get_profile("xavier-nx"), transport)
        assert health_problems(board) == []
        transport.run(LEFTOVER, timeout=30).check()
        try:
            assert health_problems(board) == ["1 leftover JETSON_HIL_ firewall rules: a fault was not undone"]
        finally:
            transport.run("iptables -X JETSON_HIL_LEFTOVER", timeout=30).check()


def test_an_unhealthy_board_without_power_control_is_quarantined_until_released(
        entry: dict, tmp_path: Path, leftover: None) -> None:
    lab = make_lab(tmp_path, entry)
    heard: list[str] = []
    with pytest.raises(LeaseError, match=r"no usable board: health-nx quarantined since .*leftover JETSON_HIL_"), \
            board_entry("tag:health", lab, lease_timeout=1, say=heard.append, health_check=True):
        pass
    assert any("quarantined" in line and "hil devices --release health-nx" in line for line in heard), heard
    store = lab.leases()
    assert store.holder(NAME) is None and store.record(NAME).infra_failures == 1
    with pytest.raises(LeaseError, match="quarantined"), board_entry("tag:health", lab, lease_timeout=1):
        pass  # selectors pass over a quarantined board, checked or not
    lab_file = tmp_path / "lab.yaml"
    released = subprocess.run([sys.executable, "-m", "harness", "devices", "--lab", str(lab_file), "--release", NAME],
                              cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert released.returncode == 0 and "released from quarantine" in released.stdout, released.stderr
    with board_entry("tag:health", lab, lease_timeout=5) as leased:
        assert leased.name == NAME


def test_an_unhealthy_board_is_power_cycled_once_and_used(entry: dict, tmp_path: Path, leftover: None) -> None:
    """`docker restart` is the virtual board's PDU: a new boot, without the rule (a new network namespace)."""
    lab = make_lab(tmp_path, {**entry, "power_cycle": f"docker restart {NAME}"})
    boot = on_board(lab, "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat")
    heard: list[str] = []
    with board_entry("tag:health", lab, lease_timeout=5, say=heard.append, health_check=True) as leased:
        assert leased.name == NAME
        assert on_board(lab, "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat") != boot
        assert "JETSON_HIL_" not in on_board(lab, "iptables -S")
    assert any("power-cycling it once" in line for line in heard), heard
    assert lab.leases().quarantined(NAME) is None


def test_infrastructure_failures_in_a_row_quarantine_a_board(entry: dict, tmp_path: Path, leftover: None) -> None:
    lab = make_lab(tmp_path, {**entry, "power_cycle": f"docker restart {NAME}"}, quarantine_after=2)
    store = lab.leases()
    store.record_run(NAME, "last night", "lost mid-run: connection reset", infra_failure=True)
    with pytest.raises(LeaseError, match="2 sessions in a row failed for infrastructure reasons"), \
            board_entry("tag:health", lab, lease_timeout=1, health_check=True):
        pass
    quarantine = store.quarantined(NAME)
    assert quarantine is not None and quarantine.recheck_at is not None  # checked again after quarantine_recheck_s

"""The pytest plugin, driven through pytester in a subprocess as a user would run it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def test_help_shows_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    out = result.stdout.str()
    for option in ("--device=SELECTOR", "--lab=LAB_YAML", "--report-dir=DIR", "--power-mode=MODES",
                   "--lease-timeout=SECONDS"):
        assert option in out


def test_requires_marker_skips_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("int8")
        def test_int8(device_profile):
            pass

        @pytest.mark.requires("fp16")
        def test_fp16(device_profile):
            assert device_profile.name == "nano"
    """)
    result = pytester.runpytest_subprocess("--device=nano", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*nano lacks int8*"])


def test_without_device_board_tests_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_needs_board(board):
            pass
    """)
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no board selected: pass --device*"])


THREE_BOARD_TESTS = """
def test_a(board):
    pass

def test_b(board):
    pass

def test_c(board):
    pass
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_board_errors_once_then_skips(pytester: pytest.Pytester, tmp_path: Path) -> None:
    lab = pytester.path / "lab.yaml"
    lab.write_text(f"""
boards:
  - name: gone
    profile: xavier-nx
    transport: {{kind: ssh, host: 127.0.0.1, port: {_closed_port()}, connect_timeout: 2}}
""")
    pytester.makepyfile(THREE_BOARD_TESTS + "\ndef test_no_board():\n    pass\n")
    result = pytester.runpytest_subprocess("--device=gone", f"--lab={lab}", "-rs",
                                           f"--basetemp={tmp_path / 'base'}",
                                           "-o", f"cache_dir={tmp_path / 'cache'}")
    result.assert_outcomes(errors=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(["*board 'gone' unavailable, skipping the rest*",
                                 "*board unavailable:*"])


def test_unknown_device_lists_boards(pytester: pytest.Pytester) -> None:
    lab = pytester.path / "lab.yaml"
    lab.write_text("boards:\n  - {name: nx1, profile: xavier-nx, transport: {kind: local}}\n")
    pytester.makepyfile("""
        def test_a(board):
            pass
    """)
    result = pytester.runpytest_subprocess("--device=orin-42", f"--lab={lab}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no board matches --device 'orin-42'*boards: nx1*"])


@pytest.mark.sshd
def test_a_host_that_is_no_jetson_is_refused_over_real_ssh(pytester: pytest.Pytester, sshd_server) -> None:
    """The board fixture connects over SSH, reads the board's identity and refuses what is not the profile's model:
    this machine has no Jetson device tree, so the lab's board is refused once, clearly, naming it."""
    lab = pytester.path / "lab.yaml"
    lab.write_text(f"""
boards:
  - name: bench-1
    profile: xavier-nx
    tags: [ci]
    transport:
      kind: ssh
      host: {sshd_server.host}
      port: {sshd_server.port}
      user: {sshd_server.user}
      key: {sshd_server.key_file}
      known_hosts: {sshd_server.known_hosts}
""")
    pytester.makepyfile("""
        def test_run(board):
            assert board.name == "bench-1"
            assert board.transport.run("echo hello").stdout == "hello\\n"

        def test_same_board(board, device_profile):
            assert device_profile.name == "xavier-nx"
    """)
    result = pytester.runpytest_subprocess("--device=tag:ci", f"--lab={lab}", "-rs")
    result.assert_outcomes(errors=1, skipped=1)
    result.stdout.fnmatch_lines(["*board 'tag:ci' unavailable*no device-tree model*is this a Jetson running L4T?*"])


@pytest.fixture(autouse=True)
def _private_leases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test leases from its own folder, so tests never wait on each other's boards."""
    monkeypatch.setenv("JETSON_HIL_LEASE_DIR", str(tmp_path / "leases"))


@pytest.mark.virtual
@pytest.mark.parametrize("virtual_board", ["xavier-nx"], indirect=True)
def test_tests_are_built_from_the_leased_boards_profile(virtual_board, pytester: pytest.Pytester,
                                                        tmp_path: Path) -> None:
    """`tag:` spans a Nano (first in the inventory, but busy) and the virtual Xavier NX (free): the throughput
    tests must carry the Xavier NX's power modes, not the first board's."""
    import yaml

    from harness.lease import acquire
    from harness.virtual import boards

    nx = boards.find(virtual_board.name).entry(tags=("mixed",)).model_dump(mode="json", exclude_none=True)
    nano = {"name": "nano-busy", "profile": "nano", "tags": ["mixed"],
            "transport": {"kind": "ssh", "host": "127.0.0.1", "port": _closed_port()}}
    lab = tmp_path / "lab.yaml"
    lab.write_text(yaml.safe_dump({"lease_dir": str(tmp_path / "leases"), "boards": [nano, nx]}))
    suites = Path(__file__).resolve().parents[1] / "suites"
    with acquire(["nano-busy"], tmp_path / "leases", timeout=5, purpose="another job"):
        result = pytester.runpytest_subprocess(str(suites / "test_throughput.py"), f"--lab={lab}",
                                               "--device=tag:mixed", "--collect-only", "-q", "--precision", "fp32",
                                               "--batch", "1", "-p", "no:cacheprovider")
    ids = [line for line in result.stdout.lines if "test_throughput[" in line]
    assert ids == [f"{suites.name}/test_throughput.py::test_throughput[{mode}-b1-fp32]"
                   for mode in ("MODE_15W_6CORE", "MODE_20W_6CORE")], result.stdout.str()


def test_a_broken_lab_file_is_reported_once(pytester: pytest.Pytester) -> None:
    lab = pytester.path / "lab.yaml"
    lab.write_text("boards:\n  - {name: nx1, profile: xavier-nxx, transport: {kind: local}}\n")
    pytester.makepyfile(THREE_BOARD_TESTS)
    result = pytester.runpytest_subprocess("--device=nx1", f"--lab={lab}")
    result.assert_outcomes(errors=1, skipped=2)
    errors = [line for line in result.stdout.lines if "unknown profile 'xavier-nxx'" in line]
    # the error, and its summary line where the terminal is wide enough to show the reason
    assert 1 <= len(errors) <= 2 and "Traceback" not in result.stdout.str()
    assert "another exception occurred" not in result.stdout.str()


def test_a_farm_run_whose_boards_are_all_quarantined_fails_once_and_says_why(pytester: pytest.Pytester,
                                                                              tmp_path: Path) -> None:
    """Workers skip only when their own run holds every board; a farm with no usable board is a failed run."""
    from harness.lease import FileLeaseStore

    lab = tmp_path / "lab.yaml"
    lab.write_text(f"lease_dir: {tmp_path / 'leases'}\nboards:\n"
                   "  - {name: nx1, profile: xavier-nx, tags: [farm], transport: {kind: local}}\n")
    FileLeaseStore(tmp_path / "leases").quarantine("nx1", "health check: 3 MB free on /", None)
    pytester.makepyfile(THREE_BOARD_TESTS)
    result = pytester.runpytest_subprocess("--device=tag:farm", f"--lab={lab}", "-n", "2", "-rs",
                                           "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=2, skipped=4)  # each worker: one error naming why, its other tests skipped
    result.stdout.fnmatch_lines(["*no usable board: nx1 quarantined since * health check: 3 MB free on /*"])

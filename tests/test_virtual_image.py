"""Image builds for virtual boards: bounded (a stalled debootstrap ends in one clear error at its deadline), from the
Debian closest to each board's JetPack, saying where they differ from it, and under qemu-user for another CPU."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.profiles import get_profile
from harness.results import EMULATED_CPU, modeled_metrics
from harness.virtual.image import emulation_ready, run_with_progress
from harness.virtual.recipe import ARCHES, BoardContext, debian_suite, host_arch
from tests.virtual import docker_or_skip


def test_a_stalled_build_step_is_killed_at_its_deadline() -> None:
    started = time.monotonic()
    # the child keeps the output pipe open, as a hung wget under debootstrap would
    with pytest.raises(HarnessError, match=r"debootstrap stand-in did not finish within 1 s; last lines:\nfetching"):
        run_with_progress(["sh", "-c", "echo fetching; sleep 60 & wait"], "debootstrap stand-in", timeout_s=1)
    assert time.monotonic() - started < 10


def test_a_failing_build_step_says_how_it_ended() -> None:
    with pytest.raises(HarnessError, match=r"step failed \(exit 3\); last lines:\nboom"):
        run_with_progress(["sh", "-c", "echo boom; exit 3"], "step", timeout_s=30)


def test_hil_virtual_refuses_a_bad_name_and_says_when_there_is_no_board() -> None:
    bad = subprocess.run([sys.executable, "-m", "harness", "virtual", "up", "nano", "--name", "a/b"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "Invalid value for --name: 'a/b': a board name is letters, digits" in " ".join(bad.stderr.split())
    docker_or_skip()
    gone = subprocess.run([sys.executable, "-m", "harness", "virtual", "down", "no-such-board-here"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and gone.stdout.strip() == "no-such-board-here: no such virtual board"


@pytest.mark.parametrize(("profile", "suite"), [("nano", "bullseye"), ("tx2", "bullseye"), ("xavier-nx", "bullseye"),
                                                ("agx-xavier", "bullseye"), ("agx-orin", "bullseye"),
                                                ("orin-nano", "bookworm"), ("orin-nx", "bookworm")])
def test_each_board_is_built_from_the_debian_closest_to_its_jetpack(profile: str, suite: str) -> None:
    """JetPack 4 (glibc 2.27) and 5 (2.31) get bullseye (2.31; buster is gone from the mirror), 6 (2.35) bookworm."""
    assert debian_suite(get_profile(profile)) == suite


def test_a_board_says_where_its_userspace_differs_from_its_jetpack() -> None:
    profile = get_profile("xavier-nx")  # JetPack 4.6.6: Python 3.6, glibc 2.27, aarch64
    native = BoardContext.for_profile(profile, "jetson-hil/base:test", Path("/nonexistent"), "amd64")
    emulated = BoardContext.for_profile(profile, "jetson-hil/base:test", Path("/nonexistent"), "arm64")
    said = {ctx.arch: [line for line in ctx.files["etc/jetson-hil/differs"].decode().splitlines()
                       if not line.startswith("#")] for ctx in (native, emulated)}
    common = ["python: 3.9 (JetPack 4.6.6: 3.6)", "glibc: 2.31 (JetPack 4.6.6: 2.27)"]
    if host_arch() == "amd64":
        assert said["amd64"] == [*common, "architecture: x86_64 (JetPack 4.6.6: aarch64)"]
        assert said["arm64"][:2] == common and said["arm64"][2].startswith("cpu: aarch64 emulated by qemu-user on ")
        assert len(said["arm64"]) == 3
    # under qemu the CPU's timings are the emulation's: every FPS row says so, power stays modeled
    modeled = modeled_metrics(emulated.files["etc/jetson-hil/modeled"].decode())
    assert (EMULATED_CPU in modeled) == (host_arch() != "arm64")
    assert EMULATED_CPU not in modeled_metrics(native.files["etc/jetson-hil/modeled"].decode()) or \
        host_arch() != "amd64"
    assert native.tag() != emulated.tag()
    # a JetPack 6 board on bookworm differs in both, the glibc by one minor release
    orin = BoardContext.for_profile(get_profile("orin-nano"), "jetson-hil/base:test", Path("/nonexistent"), "arm64")
    assert "glibc: 2.36 (JetPack 6.2: 2.35)" in orin.files["etc/jetson-hil/differs"].decode()


def test_a_foreign_board_needs_qemu_registered(tmp_path: Path) -> None:
    foreign = "arm64" if host_arch() != "arm64" else "amd64"
    entry = tmp_path / f"qemu-{ARCHES[foreign]}"
    with pytest.raises(HarnessError, match=r"runs under qemu-user.*missing\): run scripts/setup.sh"):
        emulation_ready(foreign, tmp_path)
    entry.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: P\noffset 0\n")
    with pytest.raises(HarnessError, match="not enabled with the F flag"):
        emulation_ready(foreign, tmp_path)
    entry.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n")
    emulation_ready(foreign, tmp_path)
    emulation_ready(host_arch(), tmp_path / "nothing-here")  # the machine's own architecture needs no qemu

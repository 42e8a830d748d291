"""Telemetry windows: summaries of real tegrastats lines, and a live window over the local transport."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from itertools import pairwise
from pathlib import Path

import pytest

from harness.board.board import Board
from harness.profiles import get_profile
from harness.telemetry.tegrastats import TegrastatsSample, parse_file, parse_line
from harness.telemetry.window import (
    Received,
    TelemetryWindow,
    ThrottleRule,
    TimedSample,
    summarize,
    timed,
    trapezoid,
)
from harness.transport.local import LocalTransport
from tests.sshd import wait_until

DATA = Path(__file__).parent / "data" / "jetson" / "tegrastats"


def line(name: str) -> TegrastatsSample:
    (only,) = parse_file(DATA / name)
    return only


def at(*points: tuple[float, TegrastatsSample]) -> list[TimedSample]:
    return [TimedSample(sample, t, "host") for t, sample in points]


# AGX Orin totals are sums of rails: JP5 root 2390+796+3522+301 = 7009 mW, JP7.2 5139+3268+5500 = 13907 mW.
ORIN_JP5, ORIN_JP7 = line("agx-orin-jp5-root.txt"), line("agx-orin-jp7.2-root.txt")


def test_trapezoid_by_hand() -> None:
    assert trapezoid([(0.0, 2.0), (1.0, 4.0), (3.0, 0.0)]) == 1 * 3.0 + 2 * 2.0
    assert trapezoid([(0.0, 5.0)]) == 0.0


def test_orin_energy_is_trapezoid_of_summed_rails() -> None:
    samples = at((0.0, ORIN_JP5), (0.5, ORIN_JP7), (1.5, ORIN_JP5))
    s = summarize(samples, profile=get_profile("agx-orin"), mode="MAXN")
    step = (7.009 + 13.907) / 2  # W, the same pair of samples in both steps
    assert s.energy_j == pytest.approx(0.5 * step + 1.0 * step)
    assert s.span_s == 1.5
    assert s.mean_power_w == pytest.approx(step)  # time-weighted: energy / span
    assert s.max_power_w == pytest.approx(13.907)
    assert s.energy_note is None
    assert (s.samples, s.clock) == (3, "host")


def test_frames_give_energy_per_frame_and_fps_per_w() -> None:
    samples = at((0.0, ORIN_JP5), (0.5, ORIN_JP7), (1.5, ORIN_JP5))
    s = summarize(samples, frames=300, duration_s=1.5, profile=get_profile("agx-orin"), mode=0)
    assert s.energy_per_frame_j == pytest.approx(s.energy_j / 300)  # duration equals the sample span here
    assert s.fps_per_w == pytest.approx(200 / s.mean_power_w)
    assert s.energy_per_frame_j * s.fps_per_w == pytest.approx(1.0)
    longer = summarize(samples, frames=300, duration_s=3.0, profile=get_profile("agx-orin"), mode=0)
    assert longer.energy_per_frame_j == pytest.approx(2 * s.energy_per_frame_j)


def test_nano_counts_the_input_rail_only() -> None:
    nano = line("nano-root.txt")  # POM_5V_IN 933, POM_5V_GPU 0, POM_5V_CPU 84: the sum would be 1017 mW
    s = summarize(at((0.0, nano), (1.0, line("nano-user.txt")), (2.0, nano)), profile=get_profile("nano"), mode="MAXN")
    assert s.energy_j == pytest.approx(2 * 0.933)
    assert s.max_power_w == pytest.approx(0.933)


def test_tx2_vdd_in_rule_between_idle_and_loaded() -> None:
    samples = at((0.0, line("tx2-root.txt")), (2.0, line("tx2-loaded-root.txt")))
    s = summarize(samples, profile=get_profile("tx2"), mode="MAXN")
    assert s.energy_j == pytest.approx(2.0 * (1.383 + 14.025) / 2)


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_samples_give_no_energy_and_say_why(count: int) -> None:
    s = summarize(at((0.0, ORIN_JP5))[:count], frames=10, duration_s=1.0, profile=get_profile("agx-orin"), mode=0)
    assert s.energy_j is None and s.energy_per_frame_j is None and s.fps_per_w is None
    assert s.energy_note is not None
    assert s.samples == count
    assert s.mean_power_w == (pytest.approx(7.009) if count else None)


def test_samples_without_rails_say_so() -> None:
    user = line("agx-orin-jp5-user.txt")  # no rails without root on AGX Orin JP5
    s = summarize(at((0.0, user), (1.0, user)), profile=get_profile("agx-orin"), mode=0)
    assert s.energy_j is None and s.mean_power_w is None
    assert "no total power" in (s.energy_note or "")


def test_identical_timestamps_give_no_energy() -> None:
    s = summarize(at((4.0, ORIN_JP5), (4.0, ORIN_JP7)), profile=get_profile("agx-orin"), mode=0)
    assert s.energy_j is None and "timestamp" in (s.energy_note or "")
    assert s.mean_power_w == pytest.approx((7.009 + 13.907) / 2)


def test_peak_temperature_skips_the_fixed_pmic_reading() -> None:
    xavier = line("agx-xavier-jp4-root.txt")  # PMIC@100C is a constant, Tdiode@31.25C is the hottest sensor
    s = summarize(at((0.0, xavier)), profile=get_profile("agx-xavier"), mode="MAXN")
    assert (s.peak_temp_c, s.peak_temp_sensor) == (31.25, "Tdiode")
    s = summarize(at((0.0, ORIN_JP5), (1.0, ORIN_JP7)), profile=get_profile("agx-orin"), mode=0)
    assert (s.peak_temp_c, s.peak_temp_sensor) == (52.968, "cpu")


def test_busy_cpu_far_below_the_mode_cap_is_throttled() -> None:
    # AGX Orin JP5 root: cpu2 99%@729 while MAXN allows 2201.6 MHz.
    s = summarize(at((0.0, ORIN_JP5)), profile=get_profile("agx-orin"), mode="MAXN")
    assert s.throttled and s.throttled_samples == 1
    assert s.throttle_reason is not None and s.throttle_reason.startswith("cpu2 at 729 MHz under 99% load")
    # TX2 root: cpu3 81%@345 against MAXN's 2035.2 MHz.
    assert summarize(at((0.0, line("tx2-root.txt"))), profile=get_profile("tx2"), mode="MAXN").throttled


@pytest.mark.parametrize(("capture", "profile"), [("agx-xavier-jp4-root.txt", "agx-xavier"),
                                                  ("tx2-loaded-root.txt", "tx2")])
def test_busy_units_at_the_cap_are_not_throttled_within_tolerance(capture: str, profile: str) -> None:
    # Xavier: 91%@2265 of 2265.6 MHz and GR3D 87%@1377 of 1377 MHz; TX2: 93%@2034 of 2035.2 MHz.
    samples = at((0.0, line(capture)))
    s = summarize(samples, profile=get_profile(profile), mode="MAXN")
    assert not s.throttled and s.throttle_reason is None
    # Without tolerance the DVFS table step (2265 vs 2265.6) would read as throttling.
    assert summarize(samples, profile=get_profile(profile), mode="MAXN", throttle=ThrottleRule(tolerance=0)).throttled


def test_light_load_is_never_throttled() -> None:
    # AGX Orin JP7.2: all cores at most 33% and GR3D 12%, clocks at the MAXN cap anyway.
    assert not summarize(at((0.0, ORIN_JP7)), profile=get_profile("agx-orin"), mode="MODE_15W").throttled


def test_busy_gpu_below_cap_is_throttled_and_a_zero_clock_is_unknown() -> None:
    # The real lines with their CPU list dropped, so only the GPU rule can fire.
    nano_gpu = dataclasses.replace(line("nano-root.txt"), cpus=())  # GR3D_FREQ 63%@76, MAXN allows 921.6
    s = summarize(at((0.0, nano_gpu)), profile=get_profile("nano"), mode="MAXN", throttle=ThrottleRule(load_pct=60))
    assert s.throttled and (s.throttle_reason or "").startswith("GPU at 76 MHz under 63% load")
    orin_gpu = dataclasses.replace(ORIN_JP5, cpus=())  # GR3D_FREQ 31%@0: the clock was not read
    s = summarize(at((0.0, orin_gpu)), profile=get_profile("agx-orin"), mode=0, throttle=ThrottleRule(load_pct=30))
    assert not s.throttled


def test_rows_leave_out_what_the_samples_could_not_give() -> None:
    full = summarize(at((0.0, ORIN_JP5), (1.0, ORIN_JP7)), frames=10, duration_s=1.0,
                     profile=get_profile("agx-orin"), mode=0)
    rows = {metric: (value, unit) for metric, value, unit in full.to_rows()}
    assert set(rows) == {"telemetry_samples", "telemetry_bad_samples", "power_mean", "power_max", "energy",
                         "energy_per_frame", "fps_per_w", "temperature_peak", "throttled"}
    assert rows["energy"] == (pytest.approx(10.458), "J")
    assert rows["throttled"] == (1.0, "bool")
    empty = summarize([], profile=get_profile("agx-orin"), mode=0)
    assert [metric for metric, _, _ in empty.to_rows()] == ["telemetry_samples", "telemetry_bad_samples", "throttled"]


def test_bad_lines_are_counted_and_kept_out_of_the_figures() -> None:
    corrupt = parse_line(ORIN_JP5.raw.replace("VDD_GPU_SOC 2390mW", "VDD_GPU_SOC 99999999mW"))
    assert corrupt.problems == ("rail VDD_GPU_SOC 1e+08 mW is impossible (0..200000)",)
    assert corrupt.total_power_mw("sum") is None  # the other rails alone are no total
    junk = parse_line("sudo: a terminal is required to read the password")
    assert not junk.parsed and junk.problems
    s = summarize(at((0.0, ORIN_JP5), (0.5, junk), (1.0, corrupt), (1.5, ORIN_JP5)),
                  profile=get_profile("agx-orin"), mode=0)
    assert (s.samples, s.bad_samples) == (3, 2)
    assert s.max_power_w == pytest.approx(7.009)  # the 100 kW reading never enters a figure
    # markup around a field (a line pasted through a chat or a wiki, built here from the real line) is no
    # tegrastats field: the sample is counted bad, not passed for a good one
    marked = parse_line(ORIN_JP5.raw.replace("GR3D_FREQ", "**GR3D_FREQ**"))
    assert marked.junk
    assert summarize(at((0.0, ORIN_JP5), (0.5, marked)), profile=get_profile("agx-orin"), mode=0).bad_samples == 1


def test_board_stamps_come_first() -> None:
    samples = timed([Received(ORIN_JP5, 0.0, 1796000000.25), Received(ORIN_JP5, 0.3, 1796000000.35)])
    assert [(s.t_s, s.clock) for s in samples] == [(1796000000.25, "board"), (1796000000.35, "board")]
    mixed = timed([Received(ORIN_JP5, 0.0, 1796000000.25), Received(ORIN_JP5, 0.3)])  # one line bypassed the stamper
    assert [s.clock for s in mixed] == ["host", "host"]


def test_tegrastats_clock_when_every_sample_has_its_own_second() -> None:
    # Same AGX Orin JP5 board, captured at 16:07:54 (root) and 16:10:22 (user).
    user = line("agx-orin-jp5-user.txt")
    samples = timed([Received(ORIN_JP5, 0.0), Received(user, 0.1)])
    assert [(s.t_s, s.clock) for s in samples] == [(0.0, "tegrastats"), (148.0, "tegrastats")]


def test_receive_clock_when_board_stamps_cannot_order_samples() -> None:
    repeated = timed([Received(ORIN_JP5, 2.0), Received(ORIN_JP5, 2.25)])  # one second, two samples
    assert [(s.t_s, s.clock) for s in repeated] == [(0.0, "host"), (0.25, "host")]
    nano = line("nano-user.txt")  # JetPack 4 prints no timestamp
    assert [s.clock for s in timed([Received(nano, 1.0), Received(ORIN_JP5, 1.5)])] == ["host", "host"]


# A stand-in for tegrastats on this machine: prints a real capture line by line at --interval.
FAKE_TEGRASTATS = """#!/bin/bash
echo $$ > "{pidfile}"
interval_ms=1000
while [ $# -gt 0 ]; do
  case "$1" in --interval) interval_ms="$2"; shift 2 ;; *) shift ;; esac
done
delay=$(awk -v ms="$interval_ms" 'BEGIN {{ printf "%.3f", ms / 1000 }}')
while :; do
  while IFS= read -r line; do echo "$line"; sleep "$delay"; done < "{capture}"
  [ -n "{once}" ] && exit 0
done
"""


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def fake_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *captures: str, once: bool = False) -> Board:
    capture = tmp_path / "capture.txt"
    capture.write_text("".join((DATA / name).read_text() for name in captures))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tegrastats"
    script.write_text(FAKE_TEGRASTATS.format(pidfile=tmp_path / "pid", capture=capture, once="1" if once else ""))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    board = Board("local-tx2", get_profile("tx2"), LocalTransport())
    board.sudo = ""  # the fake needs no root; a real board decides this with `id -u`
    return board


def test_live_window_streams_parses_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board = fake_board(tmp_path, monkeypatch, "tx2-root.txt", "tx2-loaded-root.txt", "tx2-user.txt")
    started = time.time()
    with TelemetryWindow(board, interval_ms=50) as window:
        wait_until(lambda: len(window.samples()) >= 4, 10, "four samples from the live window")
    samples = window.stop()  # after the block, stop() returns what the block collected
    assert samples is window.result
    assert len(samples) >= 4
    assert {s.sample.raw for s in samples} <= set((tmp_path / "capture.txt").read_text().splitlines())
    assert all(s.clock == "board" for s in samples)  # stamped on the "board" as each line left tegrastats
    assert all(a.t_s < b.t_s for a, b in pairwise(samples))
    assert started <= samples[0].t_s and samples[-1].t_s <= time.time()
    pid = int((tmp_path / "pid").read_text())
    # killed with its process group; init reaps it (the sampler runs in a pipeline, not as the shell's child)
    wait_until(lambda: not running(pid), 5, f"the sampler (pid {pid}) gone after stop()")
    summary = window.summary(mode="MAXN", frames=100, duration_s=0.6)
    assert summary.energy_j is not None and summary.energy_j > 0
    assert summary.fps_per_w is not None


def test_live_window_keeps_lines_of_a_sampler_that_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board = fake_board(tmp_path, monkeypatch, "tx2-root.txt", "tx2-user.txt", once=True)
    window = TelemetryWindow(board, interval_ms=10).start()
    wait_until(lambda: len(window.samples()) >= 2, 10, "both lines of the sampler")
    assert [s.sample.total_power_mw() for s in window.stop()] == [1383.0, 1038.0]

"""The jtop sampler: its board script against jetson-stats' real client, and what the harness makes of its lines.

The agreement with tegrastats on a running board (jetson-stats' own service reading the board model) is in
test_virtual_fidelity; here, the ways a jtop window fails, each as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.telemetry.jtop import BOARD_SCRIPT, JtopSampler, parse_record
from harness.telemetry.sources import SAMPLERS, sampler_for
from harness.telemetry.tegrastats import MAX_RAIL_MW

JTOP_SOCKET = Path("/run/jtop.sock")


def run_script(*python_flags: str, wait_s: int = 1) -> str:
    """The board script's output, run by this host's python (which has jetson-stats as a test dependency)."""
    done = subprocess.run([sys.executable, *python_flags, "-c", BOARD_SCRIPT, "0.1", str(wait_s)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    (line,) = done.stdout.splitlines()
    return line


def record(**changes: object) -> str:
    base = {"t": 1700000000.5, "rails": {"VDD_IN": [4655, 4650], "VDD_SOC": [1450, 1450]},
            "cpus": [[True, 97.0, 1344000], [True, 1.0, 1344000], [False, None, None]],
            "gpu": [0.0, 306000], "temps": {}, "ram_kb": [2240000, 7802880], "swap_kb": [0, 3901440]}
    return json.dumps({**base, **changes})


def test_a_board_without_jetson_stats_is_one_line_saying_what_to_install() -> None:
    line = run_script("-S")  # no site-packages: the board has no jetson-stats
    with pytest.raises(HarnessError, match=r"jetson-stats is not installed on the board .*pip3 install jetson-stats"):
        parse_record(line)


@pytest.mark.skipif(JTOP_SOCKET.exists(), reason="a jtop service runs on this host")
def test_no_jtop_service_is_jtops_own_words_after_a_bounded_wait() -> None:
    line = run_script(wait_s=1)
    with pytest.raises(HarnessError, match=r"^jtop: The jtop.service is not active.*\(waited 1s\)$"):
        parse_record(line)


def test_a_sample_becomes_the_same_sample_tegrastats_gives() -> None:
    sample, board_time = parse_record(record())
    assert board_time == 1700000000.5
    assert sample.parsed and not sample.problems
    assert sample.total_power_mw("VDD_IN") == 4655 and sample.rails_mw["VDD_SOC"] == 1450
    assert [(c.online, c.load_pct, c.freq_mhz) for c in sample.cpus] == [
        (True, 97.0, 1344.0), (True, 1.0, 1344.0), (False, None, None)]
    assert sample.gpu_freq_mhz == 306.0 and sample.gpu_util_pct == 0.0
    assert sample.ram_total_mb == pytest.approx(7620.0) and sample.swap_total_mb == pytest.approx(3810.0)


def test_an_impossible_rail_is_dropped_and_named() -> None:
    sample, _ = parse_record(record(rails={"VDD_IN": [MAX_RAIL_MW * 2, 5000]}))
    assert sample.rails == () and sample.total_power_mw("VDD_IN") is None
    assert "rail VDD_IN" in sample.problems[0]


@pytest.mark.parametrize("line", ["Traceback (most recent call last):", "[1, 2]", json.dumps({"t": 1.0})])
def test_junk_is_a_bad_sample_not_a_crash(line: str) -> None:
    sample, _ = parse_record(line)
    assert not sample.parsed and sample.problems


def test_the_sources_by_name() -> None:
    assert isinstance(sampler_for("jtop"), JtopSampler) and set(SAMPLERS) == {"tegrastats", "jtop"}
    with pytest.raises(HarnessError, match="unknown telemetry source 'powertop'; choose one of tegrastats, jtop"):
        sampler_for("powertop")

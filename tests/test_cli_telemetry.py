"""`telemetry parse` on captures made of real tegrastats lines (AGX Orin JetPack 5 and 7.2, every capture)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.telemetry import app

DATA = Path(__file__).parent / "data" / "jetson" / "tegrastats"
runner = CliRunner()
REQUIRED_KEYS = (
    "time",
    "total_power_mw",
    "gpu_util_pct",
    "gpu_freq_mhz",
    "cpu_online",
    "cpu_load_pct",
    "ram_used_mb",
    "ram_total_mb",
    "temps_c",
    "rails_mw",
    "extra",
)


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A `tegrastats --logfile` style file: one sample per line, with a blank line in between."""
    jp5, jp7 = ((DATA / f"agx-orin-{jp}-root.txt").read_text().strip() for jp in ("jp5", "jp7.2"))
    path = tmp_path / "tegrastats.log"
    path.write_text(f"{jp5}\n\n{jp7}\n")
    return path


def test_json_lines(capture: Path) -> None:
    result = runner.invoke(app, ["parse", str(capture), "--format", "json"])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert set(REQUIRED_KEYS) <= set(first)

    assert first["time"] == "2023-01-03T16:07:54"
    assert first["total_power_mw"] == 2390 + 796 + 3522 + 301
    assert first["gpu_util_pct"] == 31
    assert first["cpu_online"] == 12
    assert first["ram_used_mb"] == 2257
    assert first["temps_c"]["tj"] == 41.656
    assert "CV0" not in first["temps_c"]
    assert first["rails_mw"] == dict(VDD_GPU_SOC=2390, VDD_CPU_CV=796, VIN_SYS_5V0=3522, VDDQ_VDD2_1V8AO=301)
    assert first["extra"] == {"GR3D2_FREQ": "99%@0"}

    assert second["total_power_mw"] == 5139 + 3268 + 5500
    assert (second["gpu_util_pct"], second["gpu_freq_mhz"]) == (12, 1300)
    assert second["ram_used_mb"] == 20642
    assert second["temps_c"] == {"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625}


def test_json_total_power_rule(capture: Path) -> None:
    result = runner.invoke(app, ["parse", str(capture), "--format", "json", "--total-power", "VDD_CPU_CV"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["total_power_mw"] for line in result.stdout.splitlines()] == [796, 3268]


def test_csv_header_is_union_of_columns(capture: Path) -> None:
    result = runner.invoke(app, ["parse", str(capture)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2
    header = result.stdout.splitlines()[0].split(",")
    assert header[:3] == ["time", "index", "cpu_online"]
    assert "temp_tj_c" in header  # only in the JetPack 5 line
    assert "temp_cpu_c" in header  # only in the JetPack 7.2 line
    assert "rail_NC_mw" not in header
    assert header.index("temp_tj_c") < header.index("temp_cpu_c")
    assert [row["index"] for row in rows] == ["0", "1"]
    assert [float(row["total_power_mw"]) for row in rows] == [7009.0, 13907.0]
    assert rows[0]["temp_cpu_c"] == ""
    assert rows[1]["rail_VDDQ_VDD2_1V8AO_mw"] == ""
    assert float(rows[1]["gpu_freq_mhz"]) == 1300.0


def test_output_file(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    result = runner.invoke(app, ["parse", str(capture), "--format", "json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert len(out.read_text().splitlines()) == 2


def test_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    result = runner.invoke(app, ["parse", str(missing)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not isinstance(result.exception, FileNotFoundError)


def test_unwritable_output_exits_2(capture: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "out.csv"
    result = runner.invoke(app, ["parse", str(capture), "--output", str(target)])
    assert result.exit_code == 2
    assert str(target) in result.stderr


def test_parse_stays_a_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "parse" in result.stdout


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A real Orin Nano capture with what goes wrong in a lab: a corrupted VDD_IN token, an impossible rail and
    GPU load, and the output of another tool (`ls -l /`) appended to the log."""
    line = (DATA / "orin-nano-super-jp6.2-user.txt").read_text().splitlines()[0]
    listing = subprocess.run(["ls", "-l", "/"], capture_output=True, text=True, check=True).stdout
    path = tmp_path / "tegrastats.log"
    path.write_text("\n".join([
        line,
        line.replace("VDD_IN 4556mW/4556mW", "VDD_IN 45x6mW/4556mW"),
        line.replace("VDD_CPU_GPU_CV 483mW/483mW", "VDD_CPU_GPU_CV 99999999mW/483mW"),
        line.replace("GR3D_FREQ 0%", "GR3D_FREQ 101%"),
        *listing.splitlines()[:3],
    ]) + "\n")
    return path


def test_a_damaged_capture_is_reported_line_by_line(damaged: Path) -> None:
    result = runner.invoke(app, ["parse", str(damaged), "--format", "json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 4  # the ls lines are left out, not turned into rows of nulls
    # one rule for the whole capture: the sample whose VDD_IN is corrupt gets no total, not the sum of the others
    assert [r["total_power_mw"] for r in records] == [4556.0, None, 4556.0, 4556.0]
    assert "VDD_CPU_GPU_CV" not in records[2]["rails_mw"] and records[3]["gpu_util_pct"] is None
    report = result.stderr.splitlines()
    assert report[0] == "4 of 7 lines parsed; total power by VDD_IN"
    assert report[1] == "3 unparsable line(s), left out: lines 5, 6, 7"
    assert "line 3: rail VDD_CPU_GPU_CV 1e+08 mW is impossible (0..200000); the value was dropped" in report
    assert "line 4: GPU load 101% is impossible; the value was dropped" in report
    assert f"{damaged}: line 2: not a tegrastats field: 'VDD_IN', '45x6mW/4556mW'" in report
    assert report[-1] == "1 sample(s) without VDD_IN have no total power: lines 2"
    assert runner.invoke(app, ["parse", str(damaged), "--strict"]).exit_code == 1
    assert runner.invoke(app, ["parse", str(DATA / "orin-nano-super-jp6.2-user.txt"), "--strict"]).exit_code == 0


def test_a_rail_no_sample_has_is_one_line_not_null_totals(capture: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "telemetry", "parse", str(capture), "--total-power",
                           "VDD_BOGUS"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == ("error: rail 'VDD_BOGUS' is in none of the samples; rails there: VDDQ_VDD2_1V8AO, "
                                   "VDD_CPU_CV, VDD_GPU_SOC, VIN_SYS_5V0")


NVDLA = DATA / "loaded/agx-orin-nvdla-1.txt"


def test_dla_clock_is_exported() -> None:
    result = runner.invoke(app, ["parse", str(NVDLA), "--strict"])
    assert (result.exit_code, result.stderr.splitlines()) == (0, ["1 of 1 lines parsed; total power by sum"])
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert float(row["engine_NVDLA0_FREQ_mhz"]) == 1600.0
    (record,) = (json.loads(line) for line in runner.invoke(app, ["parse", str(NVDLA), "--format", "json"]).stdout
                 .splitlines())
    assert record["engines"] == {"VIC_FREQ": 115.0, "NVDLA0_FREQ": 1600.0, "APE": 174.0}
    assert record["junk"] == []


@pytest.fixture
def marked_up(tmp_path: Path) -> Path:
    """The real DLA line, then two copies corrupted for this test as a line copied from a web page or chat is:
    its GR3D_FREQ in markdown bold and in an HTML tag."""
    line = NVDLA.read_text().strip()
    path = tmp_path / "tegrastats.log"
    path.write_text("\n".join([line, line.replace("GR3D_FREQ", "**GR3D_FREQ**"),
                               line.replace("GR3D_FREQ", "<b>GR3D_FREQ</b>")]) + "\n")
    return path


def test_markup_is_flagged_with_file_line_and_token(marked_up: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "telemetry", "parse", str(marked_up), "--strict"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "3 of 3 lines parsed; total power by sum",
        f"{marked_up}: line 2: not a tegrastats field: '**GR3D_FREQ**', '14%@[407,407]'",
        f"{marked_up}: line 3: not a tegrastats field: '<b>GR3D_FREQ</b>', '14%@[407,407]'",
    ]
    # without --strict the lines still give rows (their rails are good), and the report is the same
    result = runner.invoke(app, ["parse", str(marked_up), "--format", "json"])
    assert result.exit_code == 0 and result.stderr == done.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["gpu_util_pct"] for r in records] == [14, None, None]
    assert [r["junk"] for r in records] == [
        [], ["**GR3D_FREQ**", "14%@[407,407]"], ["<b>GR3D_FREQ</b>", "14%@[407,407]"]]


@pytest.mark.parametrize("path", sorted(DATA.rglob("*.txt")), ids=lambda p: str(p.relative_to(DATA)))
def test_every_real_capture_is_good_under_strict(path: Path) -> None:
    """Every real capture (loaded/ too) parses whole under --strict; the one thing --strict may still refuse is a
    user capture without rails, for want of a total power, never a field of it."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    result = runner.invoke(app, ["parse", str(path), "--strict"])
    first, *complaints = result.stderr.splitlines()
    assert first.startswith(f"{len(lines)} of {len(lines)} lines parsed;")
    assert all(" have no total power: " in line for line in complaints), complaints
    assert result.exit_code == (1 if complaints else 0)

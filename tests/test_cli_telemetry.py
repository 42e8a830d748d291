"""`telemetry parse` on a capture made of real tegrastats lines (AGX Orin JetPack 5 and 7.2)."""

from __future__ import annotations

import csv
import io
import json
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

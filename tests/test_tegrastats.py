"""tegrastats parser against real lines from every Jetson generation in tests/data/jetson/tegrastats."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.telemetry.tegrastats import (
    Rail,
    TegrastatsSample,
    parse_file,
    parse_line,
    parse_lines,
    to_record,
    to_row,
)

DATA = Path(__file__).parent / "data" / "jetson" / "tegrastats"
CAPTURES = sorted(DATA.glob("*.txt"))
#: every real capture, those in subfolders (loaded/) too
ALL_CAPTURES = sorted(DATA.rglob("*.txt"))

# Third-party Orin NX 16GB (JP6.2) idle fixture quoted in /work/shared/research/jetson_facts.md
# section 1.3 (not one of our own captures): four cores unplugged by the power mode.
ORIN_NX_THIRD_PARTY = (
    "RAM 1224/15368MB (lfb 8x4MB) SWAP 0/7684MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,off,off,off,off] EMC_FREQ 0% GR3D_FREQ 0%@[305] "
    "CPU@43.5C GPU@42.5C tj@43.5C SOC0@42.906C SOC1@42.156C CV0@-256C "
    "VDD_IN 4319mW/4319mW VDD_CPU_GPU_CV 499mW/499mW VDD_SOC 1200mW/1200mW"
)


def sample(name: str) -> TegrastatsSample:
    (only,) = parse_file(DATA / name)
    return only


def test_every_capture_is_present() -> None:
    assert len(CAPTURES) >= 17


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_every_real_line_parses(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    samples = parse_file(path)
    assert len(samples) == len(lines) >= 1
    for line, s in zip(lines, samples, strict=True):
        assert s.raw == line
        assert len(s.cpus) > 0
        assert s.cpu_online == len(s.cpus)
        assert all(core.load_pct is not None and core.freq_mhz for core in s.cpus)
        assert s.ram_used_mb is not None and s.ram_total_mb is not None
        assert 0 < s.ram_used_mb < s.ram_total_mb
        assert s.temps_c
        assert all(value != -256.0 for value in s.temps_c.values())
        # GR3D2_FREQ (AGX Orin JP5) is the only field real captures leave to `extra`.
        assert set(s.extra) <= {"GR3D2_FREQ"}


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: str(p.relative_to(DATA)))
def test_no_real_line_is_flagged_as_junk(path: Path) -> None:
    """What a real board prints, fields the parser does not model included, is never junk."""
    for s in parse_file(path):
        assert s.parsed and s.junk == () and s.problems == (), s.raw


def test_nano_total_is_input_rail_not_sum_of_sub_rails() -> None:
    s = sample("nano-user.txt")
    assert s.rails == (
        Rail("POM_5V_IN", 933.0, 933.0, None),
        Rail("POM_5V_GPU", 0.0, 0.0, None),
        Rail("POM_5V_CPU", 84.0, 84.0, None),
    )
    assert s.total_power_mw() == 933.0
    assert s.total_power_mw("POM_5V_IN") == 933.0
    assert s.total_power_mw("sum") == 933.0 + 0.0 + 84.0
    assert s.total_power_mw("VDD_IN") is None


def test_nano_root_iram_and_clocks() -> None:
    s = sample("nano-root.txt")
    assert s.iram_used_mb == 0.0
    assert s.iram_total_mb == pytest.approx(252 / 1024)
    assert (s.gpu_util_pct, s.gpu_freq_mhz, s.emc_util_pct, s.emc_freq_mhz) == (63.0, 76.0, 3.0, 204.0)
    assert s.engines == {"APE": 25.0}
    assert s.rails[2] == Rail("POM_5V_CPU", 84.0, 105.0, None)


def test_tx2_total_is_vdd_in() -> None:
    s = sample("tx2-root.txt")
    assert s.total_power_mw() == 1383.0
    assert s.total_power_mw("VDD_IN") == 1383.0
    assert s.engines == {"APE": 150.0}
    assert s.engine_load_pct == {"MTS_FG": 0.0, "MTS_BG": 0.0}
    assert s.swap_used_mb is None


def test_tx2_loaded_lfb_in_kb_and_engines_after_rails() -> None:
    s = sample("tx2-loaded-root.txt")
    assert (s.ram_used_mb, s.ram_total_mb, s.swap_used_mb, s.swap_total_mb) == (4722.0, 7844.0, 149.0, 1024.0)
    assert s.engines["NVENC"] == 716.0
    assert s.engines["NVDEC"] == 716.0
    assert s.rails_mw["VDD_DDR"] == 2702.0
    assert s.temps_c["GPU"] == -51.0  # a cold reading, not the -256C offline marker
    assert s.total_power_mw() == 14025.0


def test_agx_orin_jp5_root_sums_rails_skipping_nc() -> None:
    s = sample("agx-orin-jp5-root.txt")
    assert [rail.name for rail in s.rails].count("NC") == 2
    assert "NC" not in s.rails_mw
    assert list(s.rails_mw) == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert list(s.rails_mw.values()) == [2390.0, 796.0, 3522.0, 301.0]
    assert s.total_power_mw() == 2390.0 + 796.0 + 3522.0 + 301.0
    assert s.total_power_mw("sum") == s.total_power_mw()
    assert s.engines == {"NVJPG1": 729.0, "VIC_FREQ": 115.0, "APE": 233.0}
    assert s.extra == {"GR3D2_FREQ": "99%@0"}
    assert (s.gpu_util_pct, s.gpu_freq_mhz) == (31.0, 0.0)


def test_agx_orin_jp6_engines_print_load_at_clock() -> None:
    s = sample("agx-orin-r36.4.4-root.txt")
    assert s.engines["NVENC"] == 166.0 and s.engine_load_pct["NVENC"] == 79.0
    assert s.engines["VIC"] == 115.0 and s.engine_load_pct["VIC"] == 36.0
    assert s.engines["APE"] == 174.0 and "APE" not in s.engine_load_pct  # a clock only
    assert {name for name, freq in s.engines.items() if freq is None} == {
        "NVDEC", "NVJPG", "NVJPG1", "OFA", "NVDLA0", "NVDLA1", "PVA0_FREQ"}
    assert s.extra == {}
    assert (s.gpu_util_pct, s.gpu_freq_mhz) == (0.0, 0.0)
    assert s.total_power_mw() == 2412.0 + 1607.0 + 4707.0


def test_agx_orin_jp5_dla_clock_without_load_is_an_engine() -> None:
    s = sample("loaded/agx-orin-nvdla-1.txt")
    assert s.engines == {"VIC_FREQ": 115.0, "NVDLA0_FREQ": 1600.0, "APE": 174.0}
    assert s.engine_load_pct == {}  # `@1600`: a clock, no load
    assert s.extra == {} and s.junk == ()
    assert (s.gpu_util_pct, s.gpu_freq_mhz, s.emc_util_pct, s.emc_freq_mhz) == (14.0, 407.0, 1.0, 2133.0)
    assert s.total_power_mw() == 3150.0 + 14312.0 + 4968.0 + 1091.0
    row = to_row(s)
    assert row["engine_NVDLA0_FREQ_mhz"] == 1600.0 and "engine_NVDLA0_FREQ_load_pct" not in row
    assert to_record(s)["engines"]["NVDLA0_FREQ"] == 1600.0


@pytest.mark.parametrize("markup", ["**GR3D_FREQ**", "<b>GR3D_FREQ</b>"])
def test_markup_around_a_field_is_junk_not_a_field(markup: str) -> None:
    # A real line corrupted for this test: its GR3D_FREQ wrapped in markdown or HTML, as a copy from a web page has it.
    real = sample("loaded/agx-orin-nvdla-1.txt").raw
    s = parse_line(real.replace("GR3D_FREQ", markup))
    assert s.junk == (markup, "14%@[407,407]")
    assert s.gpu_util_pct is None and s.gpu_freq_mhz is None
    assert s.parsed and s.total_power_mw() == sample("loaded/agx-orin-nvdla-1.txt").total_power_mw()
    assert f"{markup} 14%@[407,407]" in s.extra.values()  # kept, as all unknown text is
    assert to_record(s)["junk"] == [markup, "14%@[407,407]"]


def test_xavier_nx_vic_load_is_an_engine_and_mts_a_load() -> None:
    s = sample("xavier-nx-jp4-root.txt")
    assert (s.engines["VIC_FREQ"], s.engine_load_pct["VIC_FREQ"]) == (115.0, 0.0)
    assert s.engine_load_pct["MTS_BG"] == 3.0
    assert s.rails[0] == Rail("VDD_IN", 3528.0, 3569.0, None) and s.total_power_mw() == 3528.0
    assert [core.freq_mhz for core in s.cpus][-1] == 1344.0
    user = sample("xavier-nx-jp4-user.txt")
    assert user.rails == () and user.gpu_freq_mhz is None and user.ram_total_mb == 7774.0


def test_rows_carry_rail_averages_maxima_and_engines() -> None:
    row = to_row(sample("agx-orin-jp7.2-root.txt"))
    assert (row["rail_VDD_CPU_CV_mw"], row["rail_VDD_CPU_CV_avg_mw"], row["rail_VDD_CPU_CV_max_mw"]) == (
        3268.0, 3268.0, 3268.0)
    nx = to_row(sample("xavier-nx-jp4-root.txt"))
    assert (nx["rail_VDD_IN_mw"], nx["rail_VDD_IN_avg_mw"]) == (3528.0, 3569.0) and "rail_VDD_IN_max_mw" not in nx
    orin = to_row(sample("agx-orin-r36.4.4-root.txt"))
    assert (orin["engine_NVENC_mhz"], orin["engine_NVENC_load_pct"], orin["engine_NVDEC_mhz"]) == (166.0, 79.0, None)
    record = to_record(sample("xavier-nx-jp4-root.txt"))
    assert record["rails_avg_mw"] == {"VDD_IN": 3569.0, "VDD_CPU_GPU_CV": 426.0, "VDD_SOC": 1115.0}
    assert record["rails_max_mw"] == {} and record["engine_load_pct"]["MTS_BG"] == 3.0


def test_agx_orin_jp7_three_value_rails_gpc_array_and_temp_max() -> None:
    s = sample("agx-orin-jp7.2-root.txt")
    assert s.timestamp == datetime(2026, 7, 25, 9, 8, 28)
    assert s.rails == (
        Rail("VDD_GPU_SOC", 5139.0, 5139.0, 5139.0),
        Rail("VDD_CPU_CV", 3268.0, 3268.0, 3268.0),
        Rail("VIN_SYS_5V0", 5500.0, 5500.0, 5500.0),
    )
    assert s.gpu_util_pct == 12.0
    assert s.gpu_freq_mhz == 1300.0
    assert (s.emc_util_pct, s.emc_freq_mhz) == (3.0, 3199.0)
    assert s.temps_c == {"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625}
    assert s.total_power_mw() == 5139.0 + 3268.0 + 5500.0
    assert s.engines["NVENC0"] is None
    assert s.engines["PVA0_FREQ"] is None
    assert s.engines["APE"] == 174.0
    assert s.ram_total_mb == 62817.0
    assert s.swap_total_mb is None


def test_agx_orin_jp5_user_offline_sensors_dropped_and_no_rails() -> None:
    s = sample("agx-orin-jp5-user.txt")
    assert s.timestamp == datetime(2023, 1, 3, 16, 10, 22)
    for offline in ("CV0", "CV1", "GPU", "CV2"):
        assert offline not in s.temps_c
    assert s.temps_c["CPU"] == 41.375
    assert s.rails == ()
    assert s.total_power_mw() is None
    assert s.total_power_mw("sum") is None
    assert (s.gpu_util_pct, s.gpu_freq_mhz, s.emc_util_pct, s.emc_freq_mhz) == (73.0, None, 0.0, None)


def test_orin_nano_super_vdd_in_with_mw_units() -> None:
    s = sample("orin-nano-super-jp6.2-user.txt")
    assert s.total_power_mw() == 4556.0
    assert s.rails_mw == {"VDD_IN": 4556.0, "VDD_CPU_GPU_CV": 483.0, "VDD_SOC": 1451.0}
    assert (s.swap_used_mb, s.swap_total_mb) == (1476.0, 3810.0)
    assert s.emc_util_pct is None


def test_agx_xavier_jp4_sums_unitless_rails() -> None:
    s = sample("agx-xavier-jp4-root.txt")
    assert s.timestamp is None
    assert s.total_power_mw() == 1155.0 + 385.0 + 2502.0 + 0.0 + 192.0 + 2692.0
    # `CPU 385/385` is a rail here, `CPU@28C` a sensor and `CPU [..]` the cores.
    assert s.rails_mw["CPU"] == 385.0
    assert s.temps_c["CPU"] == 28.0
    assert len(s.cpus) == 8


def test_old_cpu_form_with_shared_clock() -> None:
    # Synthetic line, written for this test only: the older `CPU [N%,...]@MHz` form from NVIDIA's
    # tegrastats grammar, which none of the real captures here uses.
    s = parse_line("RAM 100/200MB CPU [10%,20%,off,off]@1200")
    assert [(c.online, c.load_pct, c.freq_mhz) for c in s.cpus] == [
        (True, 10.0, 1200.0),
        (True, 20.0, 1200.0),
        (False, None, None),
        (False, None, None),
    ]
    assert s.cpu_online == 2
    assert to_row(s)["cpu_load_mean_pct"] == 15.0


def test_third_party_orin_nx_off_cores_and_single_gpc_array() -> None:
    s = parse_line(ORIN_NX_THIRD_PARTY)
    assert len(s.cpus) == 8
    assert s.cpu_online == 4
    assert [c.index for c in s.cpus if not c.online] == [4, 5, 6, 7]
    assert (s.gpu_util_pct, s.gpu_freq_mhz) == (0.0, 305.0)
    assert "CV0" not in s.temps_c
    assert s.total_power_mw() == 4319.0
    assert to_record(s)["cpu_load_pct"] == [1.0, 0.0, 0.0, 0.0, None, None, None, None]


def test_unknown_fields_are_kept() -> None:
    line = (DATA / "tx2-root.txt").read_text().strip() + " FOO_BAR 12 weird@@token"
    s = parse_line(line)
    assert "FOO_BAR 12 weird@@token" in s.extra.values()
    assert s.junk == ("weird@@token",)  # `FOO_BAR 12` has a field's shape: a newer board's, not junk
    assert s.total_power_mw() == 1383.0
    assert s.temps_c == sample("tx2-root.txt").temps_c


def test_unknown_text_between_fields_keyed_by_token_position() -> None:
    s = parse_line("RAM 1/2MB ??? CPU [1%@2] !!")
    assert s.extra == {"token2": "???", "token5": "!!"}
    assert s.junk == ("???", "!!")
    assert len(s.cpus) == 1


def test_gpu_array_without_load_and_watts() -> None:
    # Synthetic: Thor prints `GR3D_FREQ @[...]` without a load (jetson_facts.md 1.3); rails in W.
    s = parse_line("GR3D_FREQ @[1000,1575,1000] VDD_IN 4.5W/4.25W")
    assert (s.gpu_util_pct, s.gpu_freq_mhz) == (None, 1575.0)
    assert s.rails == (Rail("VDD_IN", 4500.0, 4250.0, None),)


def test_memory_units_converted_to_mb() -> None:
    s = parse_line("RAM 1/2GB (lfb 1x512kB) SWAP 512/1024kB (cached 0kB)")
    assert (s.ram_used_mb, s.ram_total_mb) == (1024.0, 2048.0)
    assert (s.swap_used_mb, s.swap_total_mb) == (0.5, 1.0)


def test_garbage_gives_empty_sample() -> None:
    s = parse_line("not tegrastats at all")
    assert s.ram_used_mb is None
    assert s.cpus == ()
    assert s.total_power_mw() is None
    assert s.extra == {"token0": "not tegrastats at all"}


def test_bad_timestamp_is_kept_not_raised() -> None:
    s = parse_line("13-45-2023 25:61:00 RAM 1/2MB")
    assert s.timestamp is None
    assert s.extra["timestamp"] == "13-45-2023 25:61:00"
    assert s.ram_total_mb == 2.0


def test_parse_lines_skips_blank_lines() -> None:
    lines = ["", (DATA / "nano-user.txt").read_text(), "   \n", (DATA / "tx2-user.txt").read_text()]
    assert [s.total_power_mw() for s in parse_lines(lines)] == [933.0, 1038.0]


def test_to_row_is_flat_and_tidy() -> None:
    row = to_row(sample("agx-orin-jp5-root.txt"), index=7)
    assert row["time"] == "2023-01-03T16:07:54"
    assert row["index"] == 7
    assert row["cpu_online"] == 12
    assert row["cpu0_load_pct"] == 68.0
    assert row["cpu11_freq_mhz"] == 729.0
    loads = [68, 54, 99, 40, 59, 74, 58, 46, 38, 31, 23, 89]
    assert row["cpu_load_mean_pct"] == pytest.approx(sum(loads) / 12)
    assert row["temp_tj_c"] == 41.656
    assert "temp_CV0_c" not in row
    assert row["rail_VDDQ_VDD2_1V8AO_mw"] == 301.0
    assert "rail_NC_mw" not in row
    assert row["total_power_mw"] == 7009.0
    assert all(not isinstance(value, (dict, list, tuple)) for value in row.values())
    assert list(row)[:3] == ["time", "index", "cpu_online"]
    assert list(row)[-1] == "total_power_mw"


def test_to_row_total_power_rule() -> None:
    s = sample("tx2-root.txt")
    assert to_row(s, "sum")["total_power_mw"] == 1383 + 153 + 76 + 384 + 364 + 192
    assert to_row(s, "VDD_GPU")["total_power_mw"] == 76.0


def test_to_record_keys() -> None:
    record = to_record(sample("nano-root.txt"))
    assert record["time"] is None
    assert record["total_power_mw"] == 933.0
    assert record["cpu_load_pct"] == [10.0, 73.0, 38.0, 67.0]
    assert record["rails_mw"] == {"POM_5V_IN": 933.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 84.0}
    assert record["temps_c"]["thermal"] == 23.0
    assert record["extra"] == {}
    assert {"gpu_util_pct", "gpu_freq_mhz", "cpu_online", "ram_used_mb", "ram_total_mb"} <= set(record)


REAL_TOKENS = sorted({token for path in CAPTURES for token in path.read_text().split()})


@settings(deadline=None, max_examples=300, database=None)
@given(st.text())
def test_parse_line_never_raises_on_any_text(text: str) -> None:
    s = parse_line(text)
    assert isinstance(s, TegrastatsSample)
    to_row(s)
    to_record(s)


@settings(deadline=None, max_examples=300, database=None)
@given(st.lists(st.sampled_from(REAL_TOKENS), max_size=40), st.sampled_from(["", " ", "  ", "\t"]))
def test_parse_line_never_raises_on_recombined_real_tokens(tokens: list[str], sep: str) -> None:
    s = parse_line((sep or " ").join(tokens))
    assert s.cpu_online <= len(s.cpus)
    assert "NC" not in s.rails_mw
    for rule in ("auto", "sum", "VDD_IN"):
        s.total_power_mw(rule)
    to_row(s)
    to_record(s)


@settings(deadline=None, max_examples=300, database=None)
@given(st.permutations(parse_file(DATA / "agx-orin-jp5-root.txt")[0].raw.split()))
def test_shuffled_real_line_keeps_single_token_fields(tokens: list[str]) -> None:
    s = parse_line(" ".join(tokens))
    assert s.temps_c == sample("agx-orin-jp5-root.txt").temps_c

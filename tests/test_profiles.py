"""Device profiles: every shipped YAML loads, matches real nvpmodel output, bad files fail in one line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.profiles import DeviceProfile, all_profiles, load_profile

ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = ROOT / "device_profiles"
NVPMODEL_DATA = Path(__file__).resolve().parent / "data" / "jetson" / "nvpmodel"

EXPECTED_NAMES = {"nano", "tx2", "xavier-nx", "agx-xavier", "orin-nano", "orin-nx", "agx-orin"}

POWER_MODEL_RE = re.compile(r"POWER_MODEL: ID=(\d+) NAME=(\w+)")
DEFAULT_RE = re.compile(r"PM_CONFIG: DEFAULT=(\w+)\((\d+)\)")
CORE_ONLINE_RE = re.compile(r"CPU_ONLINE CORE_\d+ 1\b")


def profile_files() -> list[Path]:
    return sorted(p for p in PROFILE_DIR.glob("*.yaml") if not p.stem.startswith("lab"))


def parse_nvpmodel_verbose(path: Path) -> tuple[dict[int, str], tuple[str, int], dict[int, int]]:
    """Modes {id: name}, the default (name, id) and online cores per mode from `nvpmodel -p --verbose`."""
    modes: dict[int, str] = {}
    online: dict[int, int] = {}
    default: tuple[str, int] | None = None
    current: int | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := DEFAULT_RE.search(line):
            default = (match[1], int(match[2]))
        elif match := POWER_MODEL_RE.search(line):
            current = int(match[1])
            modes[current] = match[2]
            online[current] = 0
        elif current is not None and CORE_ONLINE_RE.search(line):
            online[current] += 1
    assert default is not None, f"{path}: no PM_CONFIG DEFAULT line"
    return modes, default, online


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return {path.stem: load_profile(path) for path in profile_files()}


@pytest.mark.parametrize("path", profile_files(), ids=lambda p: p.stem)
def test_every_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.default_mode.id == profile.default_power_mode
    assert profile.max_mode.id == profile.max_power_mode
    assert profile.virtual.cpus <= 2.0
    assert profile.virtual.memory_mb <= min(profile.memory_mb, 4096)


def test_profile_names_are_the_expected_set(profiles: dict[str, DeviceProfile]) -> None:
    assert set(profiles) == EXPECTED_NAMES


def test_all_profiles_skips_the_lab_inventory() -> None:
    assert (PROFILE_DIR / "lab.example.yaml").exists()
    assert set(all_profiles(PROFILE_DIR)) == EXPECTED_NAMES


@pytest.mark.parametrize("name", ["nano", "agx-xavier", "agx-orin"])
def test_modes_match_real_nvpmodel_output(profiles: dict[str, DeviceProfile], name: str) -> None:
    modes, (default_name, default_id), _ = parse_nvpmodel_verbose(NVPMODEL_DATA / f"{name}-p-verbose.txt")
    profile = profiles[name]
    assert {mode.id: mode.name for mode in profile.power_modes} == modes
    assert profile.default_power_mode == default_id
    assert profile.default_mode.name == default_name


@pytest.mark.parametrize("name", ["nano", "agx-xavier", "agx-orin"])
def test_online_cores_match_real_nvpmodel_output(profiles: dict[str, DeviceProfile], name: str) -> None:
    _, _, online = parse_nvpmodel_verbose(NVPMODEL_DATA / f"{name}-p-verbose.txt")
    assert {mode.id: mode.online_cores for mode in profiles[name].power_modes} == online


def test_agx_orin_online_cores_per_mode(profiles: dict[str, DeviceProfile]) -> None:
    _, _, online = parse_nvpmodel_verbose(NVPMODEL_DATA / "agx-orin-p-verbose.txt")
    assert online == {0: 12, 1: 4, 2: 8, 3: 12}
    assert {m.name: m.online_cores for m in profiles["agx-orin"].power_modes} == {
        "MAXN": 12, "MODE_15W": 4, "MODE_30W": 8, "MODE_50W": 12}


@pytest.mark.parametrize(("name", "rule"), [
    ("nano", "POM_5V_IN"),
    ("tx2", "VDD_IN"),
    ("xavier-nx", "VDD_IN"),
    ("agx-xavier", "sum"),
    ("orin-nano", "VDD_IN"),
    ("orin-nx", "VDD_IN"),
    ("agx-orin", "sum"),
])
def test_total_power_rule(profiles: dict[str, DeviceProfile], name: str, rule: str) -> None:
    telemetry = profiles[name].telemetry
    assert telemetry.total_power == rule
    if rule != "sum":
        assert rule in telemetry.rails


def test_maxn_modes_have_no_budget(profiles: dict[str, DeviceProfile]) -> None:
    """MAXN-type modes are uncapped, except Nano's MAXN, which NVIDIA documents as the 10 W mode."""
    for profile in profiles.values():
        for mode in profile.power_modes:
            if mode.name.startswith("MAXN") and profile.name != "nano":
                assert mode.budget_w is None, f"{profile.name} {mode.name}"
    assert profiles["nano"].mode("MAXN").budget_w == 10


def test_capabilities(profiles: dict[str, DeviceProfile]) -> None:
    assert not profiles["nano"].supports("int8")
    assert profiles["nano"].supports("fp16")
    assert not profiles["tx2"].supports("int8")
    assert profiles["xavier-nx"].supports("int8")
    assert profiles["xavier-nx"].supports("dla")
    assert profiles["agx-orin"].supports("dla")
    assert profiles["orin-nx"].supports("dla")
    assert not profiles["orin-nano"].supports("dla")
    assert not profiles["nano"].supports("dla")
    assert profiles["agx-orin"].supports("cores>=12")
    assert not profiles["orin-nano"].supports("cores>=8")


def _replace(pattern: str, replacement: str):
    def edit(text: str) -> str:
        new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert count == 1, f"test setup: {pattern!r} not found in the template"
        return new
    return edit


BREAKAGES = {
    "cpu_cores not a number": (_replace(r"^cpu_cores: 6\b", "cpu_cores: many"), "cpu_cores"),
    "soc missing": (_replace(r"^soc: .*\n", ""), "soc"),
    "soc bad pattern": (_replace(r"^soc: tegra194", "soc: xavier"), "soc"),
    "default mode not defined": (_replace(r"^default_power_mode: 2\b", "default_power_mode: 42"),
                                 "default_power_mode"),
    "unknown field": (_replace(r"^(dla_cores: .*)$", r"\1\ndla_clock_mhz: 1100"), "dla_clock_mhz"),
    "misspelt field": (_replace(r"^dla_cores:", "dla_core:"), "dla_core: unknown field"),
    "mode with zero cores": (_replace(r"online_cores: 2,", "online_cores: 0,"), "online_cores"),
    "bad precision": (_replace(r"^precisions: \[fp32, fp16, int8\]", "precisions: [fp32, fp8]"),
                      "precisions"),
    "bad virtual l4t": (_replace(r"^  l4t: 32.7.6", "  l4t: R35"), "virtual.l4t"),
    "bad YAML indentation": (_replace(r"^  dialect: jp4", "    dialect: jp4"), "line"),
    "model value with no source": (_replace(r"^      gpu_floor_mhz: .*$", ""), "neither cited in `sources`"),
    "model rails not the telemetry rails": (_replace(r"^      VDD_SOC: ", "      VDD_SYS: "),
                                            "differ from telemetry.rails"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_malformed_profile_is_one_line_config_error(tmp_path: Path, breakage: str) -> None:
    edit, field = BREAKAGES[breakage]
    path = tmp_path / "xavier-nx.yaml"
    shutil.copy(PROFILE_DIR / "xavier-nx.yaml", path)
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert field in message


def test_name_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "my-board.yaml"
    shutil.copy(PROFILE_DIR / "xavier-nx.yaml", path)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.field == "name"

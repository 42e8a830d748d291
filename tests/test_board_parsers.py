"""Board tool parsers on real captures from Jetson boards (tests/data/jetson, copied from shared/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.board.identity import (
    Identity,
    L4tRelease,
    l4t_outside,
    module_part_number,
    parse_l4t_core_version,
    parse_nv_tegra_release,
    profile_mismatch,
    split_dt_strings,
)
from harness.board.jetson_clocks import parse_show
from harness.board.nvpmodel import parse_query, parse_verbose
from harness.errors import ParseError
from harness.profiles import all_profiles, get_profile

DATA = Path(__file__).parent / "data" / "jetson"


def read(rel: str) -> str:
    return (DATA / rel).read_text()


def test_nv_tegra_release_lines_map_to_jetpack() -> None:
    first, second = read("identity/nv_tegra_release.txt").splitlines()
    assert parse_nv_tegra_release(first) == L4tRelease(36, 4, 3)
    assert parse_nv_tegra_release(first).jetpack == "6.2"
    assert str(parse_nv_tegra_release(second)) == "35.4.1"
    assert parse_nv_tegra_release(second).jetpack == "5.1.2"


def test_l4t_core_package_version_is_the_fallback() -> None:
    assert parse_l4t_core_version("36.4.3-20250107153711") == L4tRelease(36, 4, 3)
    with pytest.raises(ParseError, match="nvidia-l4t-core"):
        parse_l4t_core_version("not-a-version")


def test_bad_release_line_names_the_file() -> None:
    with pytest.raises(ParseError, match="/etc/nv_tegra_release"):
        parse_nv_tegra_release("Ubuntu 22.04")


def test_device_tree_strings_and_part_number() -> None:
    lines = [ln for ln in read("identity/device-tree.txt").splitlines() if not ln.startswith("#")]
    model, xavier_model, *compatible = lines
    on_board = "\x00".join(compatible) + "\x00"  # NUL-separated as on the board
    assert split_dt_strings(model + "\x00") == ["NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"]
    assert xavier_model == "NVIDIA Jetson Xavier NX Developer Kit"
    parsed = split_dt_strings(on_board)
    assert parsed == ["nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234"]
    assert module_part_number(parsed) == "p3767-0005"
    # only the carrier+module entry: the module is the part after '+'
    assert module_part_number(parsed[:1]) == "p3767-0005"


@pytest.mark.parametrize(("name", "default", "modes"), [
    ("nano", 0, [(0, "MAXN", 4), (1, "5W", 2)]),
    ("agx-orin", 2, [(0, "MAXN", 12), (1, "MODE_15W", 4), (2, "MODE_30W", 8), (3, "MODE_50W", 12)]),
    ("agx-xavier", 2, [(0, "MAXN", 8), (1, "MODE_10W", 2), (2, "MODE_15W", 4), (3, "MODE_30W_ALL", 8),
                       (4, "MODE_30W_6CORE", 6), (5, "MODE_30W_4CORE", 4), (6, "MODE_30W_2CORE", 2)]),
])
def test_nvpmodel_verbose(name: str, default: int, modes: list[tuple[int, str, int]]) -> None:
    config = parse_verbose(read(f"nvpmodel/{name}-p-verbose.txt"))
    assert config.default_id == default
    assert [(m.id, m.name, m.online_cores) for m in config.modes] == modes


def test_nvpmodel_verbose_clock_caps() -> None:
    orin = parse_verbose(read("nvpmodel/agx-orin-p-verbose.txt"))
    assert orin.by_id(1).max_freq("CPU") == 1113600  # kHz
    assert orin.by_id(1).max_freq("GPU") == 420750000  # Hz
    assert orin.by_id(3).max_freq("GPU") == 828750000


@pytest.mark.parametrize(("name", "mode_id", "mode_name"), [
    ("agx-orin-q", 0, "MAXN"),
    ("orin-nano-super-q", 2, "MAXN_SUPER"),
    ("agx-xavier-q", 2, "MODE_15W"),  # a warning line comes first
    ("agx-xavier-q-fanmode", 5, "MODE_30W_4CORE"),  # the fan mode comes first
])
def test_nvpmodel_query(name: str, mode_id: int, mode_name: str) -> None:
    state = parse_query(read(f"nvpmodel/{name}.txt"))
    assert (state.id, state.name) == (mode_id, mode_name)


def test_nvpmodel_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_query("NVPM ERROR: failed to read config")
    with pytest.raises(ParseError):
        parse_verbose("nothing here")


def test_jetson_clocks_show_tx2() -> None:
    status = parse_show(read("jetson_clocks/tx2-show.txt"))
    assert status.power_mode == "MAXP_CORE_ARM"
    assert status.online_cpus == "0,3-5"
    assert [d.name for d in status.domains if d.name.startswith("cpu") and d.online] == ["cpu0", "cpu3", "cpu4", "cpu5"]
    gpu = status.domain("GPU")
    assert gpu is not None and (gpu.min, gpu.max, gpu.current) == (114750000, 1134750000, 114750000)
    assert not status.locked  # CPU min 345600 < max 2035200


def test_jetson_clocks_show_orin_nano() -> None:
    status = parse_show(read("jetson_clocks/orin-nano-super-show.txt"))
    assert status.power_mode == "MAXN_SUPER"
    cpu0 = status.domain("cpu0")
    assert cpu0 is not None and cpu0.max == 1728000
    emc = status.domain("EMC")
    assert emc is not None and emc.current == 2133000000
    assert not status.locked


def test_jetson_clocks_lock_rule() -> None:
    """Locked means Min = Max = Current on every online domain (the TX2 capture, rewritten as locked)."""
    text = read("jetson_clocks/tx2-show.txt")
    locked = text.replace("MinFreq=345600", "MinFreq=2035200").replace("CurrentFreq=1113600", "CurrentFreq=2035200")
    locked = locked.replace("MinFreq=114750000", "MinFreq=1134750000").replace(
        "CurrentFreq=114750000", "CurrentFreq=1134750000").replace("MinFreq=40800000", "MinFreq=1600000000")
    assert parse_show(locked).locked


def test_samples_match_shared_data() -> None:
    """The bundled copy of the Jetson captures must not drift from ../shared/data/jetson."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "jetson"
    if not shared.is_dir():
        pytest.skip("no ../shared/data/jetson beside this checkout")
    for original in shared.rglob("*"):
        if original.is_file():
            copy = DATA / original.relative_to(shared)
            assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}"


def real_orin_nano() -> Identity:
    """The identity of the real Orin Nano Super devkit captured in identity/device-tree.txt and nv_tegra_release."""
    lines = [ln for ln in read("identity/device-tree.txt").splitlines() if not ln.startswith("#")]
    model, _, *compatible = lines
    return Identity(model=model, compatible=tuple(compatible), part_number=module_part_number(compatible),
                    l4t=parse_nv_tegra_release(read("identity/nv_tegra_release.txt").splitlines()[0]),
                    device_tree="/proc/device-tree")


def test_a_real_board_matches_its_own_profile_only() -> None:
    board = real_orin_nano()
    assert profile_mismatch(board, get_profile("orin-nano")) is None
    assert l4t_outside(board, get_profile("orin-nano")) is None
    # the same SoC with another module: told apart by compatible, part number and model
    same_soc = profile_mismatch(board, get_profile("orin-nx"))
    assert same_soc is not None and "p3767-0005" in same_soc and "p3767-0000" in same_soc
    assert "tegra194" in (profile_mismatch(board, get_profile("xavier-nx")) or "")
    assert l4t_outside(board, get_profile("xavier-nx")) == "L4T 36.4.3 is outside the xavier-nx profile's range " \
                                                           "32.4.3..35.6.0"


@pytest.mark.parametrize("name", sorted(all_profiles()))
def test_every_profile_accepts_the_identity_it_describes(name: str) -> None:
    """What a virtual board of the profile reports (its device tree is written from the profile)."""
    profile = get_profile(name)
    identity = Identity(model=profile.device_tree_model, compatible=tuple(profile.compatible),
                        part_number=module_part_number(profile.compatible), l4t=None, device_tree="")
    assert profile_mismatch(identity, profile) is None
    twins = [p for p in all_profiles().values() if p.soc == profile.soc and p.name != name]
    for twin in twins:  # Xavier NX and AGX Xavier share tegra194; the Orins tegra234
        assert profile_mismatch(identity, twin) is not None, (name, twin.name)

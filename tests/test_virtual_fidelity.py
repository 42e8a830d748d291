"""Every virtual profile held against the real board it names: its calibration is the real capture it cites, and
the running board reads like it (idle rails, one busy thread on one core, memory, clocks between the real floors
and the mode's caps, the line's shape for root and for a normal user), read by our parser and by jetson-stats'."""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jtop.core import tegra_parse

from harness.board import Board
from harness.inventory import Lab
from harness.lab import open_board
from harness.profiles import DeviceProfile, all_profiles, get_profile
from harness.telemetry.jtop import JtopSampler
from harness.telemetry.tegrastats import TegrastatsSample, parse_file, parse_line
from harness.telemetry.window import TelemetryWindow, TimedSample
from tests.virtual import docker_or_skip

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(all_profiles())
#: a virtual rail at idle may differ from the real capture by this share, or by IDLE_FLOOR_MW on small rails: the
#: model's clocked-idle activity (see boardmodel.power.ACTIVITY_FLOOR) and the board's own processes add a little
IDLE_TOLERANCE = 0.10
IDLE_FLOOR_MW = 100.0
BUSY_LOOP = "timeout {s} sh -c 'while :; do :; done'"


def cited_capture(source: str) -> Path | None:
    """The capture file a `sources` entry names first, when it is one in this repository."""
    path = REPO / re.split(r"[: ]", source, maxsplit=1)[0]
    return path if path.is_file() else None


@pytest.mark.parametrize("name", PROFILES)
def test_calibration_is_the_real_capture_it_cites(name: str) -> None:
    model = get_profile(name).virtual.model
    capture = cited_capture(model.sources["rails"])
    if capture is None:  # Orin NX: a third-party line quoted in the research notes, pinned in test_tegrastats
        pytest.skip(f"{name}: its idle line is not a capture in this repository ({model.sources['rails'][:40]}…)")
    (real,) = parse_file(capture)
    assert {r.name: r.cur_mw for r in real.connected_rails} == {n: r.idle_mw for n, r in model.rails.items()}
    assert real.temps_c == {n: t for n, t in model.idle_temps_c.items() if t != -256}
    for value, field in (("ram_total_mb", "ram_total_mb"), ("ram_idle_mb", "ram_used_mb"),
                         ("swap_total_mb", "swap_total_mb")):
        cited = cited_capture(model.sources[value])
        assert cited is not None, value
        (memory,) = parse_file(cited)
        assert getattr(memory, field) == getattr(model, value), value


def imports(path: Path) -> set[str]:
    """The top-level packages a Python file imports (its code, not the text of the scripts it sends to boards)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_harness_never_imports_jetson_stats() -> None:
    """jetson-stats is AGPL and a test dependency only: nothing under harness/ or module/ may import it. The jtop
    sampler's board script uses the board's own install, and the virtual board's service is jetson-stats' own,
    installed in the image as on a lab's board: both run on the board, not in the harness."""
    sources = [path for folder in ("harness", "module") for path in (REPO / folder).rglob("*.py")
               if "rootfs" not in path.parts]
    assert [str(path.relative_to(REPO)) for path in sources if "jtop" in imports(path)] == []


@pytest.fixture(scope="module", params=PROFILES)
def board(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """One virtual board at a time, of each profile (a board of its own, in its default power mode)."""
    docker_or_skip()
    from harness.virtual import boards

    name = f"fidelity-{request.param}"
    lab = Lab(lease_dir=tmp_path_factory.mktemp("leases"), boards=[boards.up(request.param, name).entry()])
    try:
        with open_board(name, lab) as opened:
            yield opened
    finally:
        boards.down(name)


def lines(board: Board, command: str, count: int, timeout: float = 30) -> list[str]:
    out: list[str] = []
    with board.transport.stream(command, timeout=timeout) as stream:
        for line in stream.lines():
            out.append(line)
            if len(out) == count:
                break
    return out


def jtop_agrees(line: str, ours: TegrastatsSample) -> None:
    """jetson-stats' tegrastats parser reads the same values from the line as ours."""
    ram = tegra_parse.RAM(line)
    assert (ram["use"], ram["tot"]) == (ours.ram_used_mb, ours.ram_total_mb)
    cpus = tegra_parse.CPUS(line)
    assert [(c.get("val"), c.get("frq")) for c in cpus.values()] == [
        (None, None) if not core.online else (core.load_pct, core.freq_mhz * 1000) for core in ours.cpus]
    assert {n: t for n, t in tegra_parse.TEMPS(line).items() if t != -256} == ours.temps_c
    assert {n: (w["cur"], w["avg"]) for n, w in tegra_parse.WATTS(line).items()} == {
        r.name: (r.cur_mw, r.avg_mw) for r in ours.rails}
    gr3d = tegra_parse.VALS(line).get("GR3D", {})
    assert gr3d.get("val") == ours.gpu_util_pct
    if ours.gpu_freq_mhz is not None:
        assert gr3d["frq"] == ours.gpu_freq_mhz * 1000


def test_idle_rails_memory_and_clocks_are_the_real_boards(board: Board) -> None:
    """In the default mode, or where it unplugs cores, in the top mode: the idle captures had every core online
    (an unplugged core saves its share of the CPU rail, and of the input rail, as on a real board)."""
    profile = board.profile
    model = profile.virtual.model
    default = profile.mode(profile.default_power_mode)
    mode = default if default.online_cores == profile.cpu_cores else profile.mode(profile.max_power_mode)
    board.set_power_mode(mode.id)
    try:
        raw = lines(board, "tegrastats --interval 500", 6)[1:]  # the first sample covers the start of tegrastats
    finally:
        board.set_power_mode(default.id)
    samples = [parse_line(line) for line in raw]
    for line, sample in zip(raw, samples, strict=True):
        assert not sample.extra and not sample.problems, line
        jtop_agrees(line, sample)
    for name, rail in model.rails.items():
        mean = sum(s.rails_mw[name] for s in samples) / len(samples)
        assert abs(mean - rail.idle_mw) <= max(IDLE_TOLERANCE * rail.idle_mw, IDLE_FLOOR_MW), (name, mean, rail.idle_mw)
    for sample in samples:
        assert sample.ram_total_mb == round(model.ram_total_mb)
        if "SWAP" in profile.telemetry.line:  # TX2's capture has no SWAP field
            assert sample.swap_total_mb == round(model.swap_total_mb)
        assert model.ram_idle_mb <= sample.ram_used_mb < model.ram_idle_mb + profile.virtual.memory_mb
        assert sample.cpu_online == mode.online_cores
        for core in sample.cpus[:mode.online_cores]:
            assert int(model.cpu_floor_mhz) <= core.freq_mhz <= mode.cpu_max_mhz, core
        assert int(model.gpu_floor_mhz) <= sample.gpu_freq_mhz <= mode.gpu_max_mhz
        assert max(sample.temps_c[n] - t for n, t in model.idle_temps_c.items() if n in sample.temps_c) < 2.0


def test_one_busy_thread_is_one_busy_core(board: Board) -> None:
    profile = board.profile
    online = next(m for m in profile.power_modes if m.id == profile.default_power_mode).online_cores
    with board.transport.stream(BUSY_LOOP.format(s=6), timeout=15) as burner:
        time.sleep(0.5)  # the loop is running: a sample must not straddle its start
        raw = lines(board, "tegrastats --interval 1000", 3)
        show = board.transport.run("jetson_clocks --show", timeout=15).check().stdout
        burner.stop()
    busy = [parse_line(line) for line in raw[1:]]
    for sample in busy:
        loads = sorted((core.load_pct for core in sample.cpus[:online]), reverse=True)
        assert loads[0] >= 60 and all(load <= 20 for load in loads[1:]), sample.raw
        assert sample.gpu_util_pct in (None, 0)
    cap = next(m for m in profile.power_modes if m.id == profile.default_power_mode).cpu_max_mhz
    # the governor follows the busy core up to the mode's cap, and jetson_clocks --show says what tegrastats says
    assert all(0.85 * cap <= core.freq_mhz <= cap for core in busy[-1].cpus[:online]), busy[-1].raw
    shown = [int(khz) / 1000 for khz in re.findall(r"^cpu\d+: Online=1 .* CurrentFreq=(\d+) ", show, re.MULTILINE)]
    assert len(shown) == online and all(0.85 * cap <= mhz <= cap for mhz in shown), show
    rails = profile.virtual.model.rails
    rule = profile.telemetry.total_power
    idle_total = sum(r.idle_mw for r in rails.values()) if rule == "sum" else rails[rule].idle_mw
    assert busy[-1].total_power_mw() > idle_total + 100  # power rises with the work


def test_a_normal_user_gets_the_user_line(board: Board) -> None:
    profile: DeviceProfile = board.profile
    (raw,) = lines(board, "su nobody -s /bin/sh -c 'tegrastats --interval 300'", 1)
    user = parse_line(raw)
    assert not user.extra, raw
    assert ("RAILS" in profile.telemetry.user_line) == bool(user.rails)
    assert user.gpu_freq_mhz is None and user.emc_freq_mhz is None  # no clocks for a normal user
    jtop_agrees(raw, user)


#: jtop and tegrastats sample one model at their own moments, and jtop's INA3221 reads come in steps of
#: BUS_MV / 1000 mW (5 mW): their mean total power under one steady load may differ by this share
JTOP_POWER_TOLERANCE = 0.03


def window_means(samples: list[TimedSample], rule: str) -> tuple[float, float, float]:
    """(mean total mW, mean busiest core's load %, mean GPU clock MHz) of a window's samples."""
    totals = [s.sample.total_power_mw(rule) for s in samples]
    busiest = [max(c.load_pct or 0.0 for c in s.sample.cpus) for s in samples]
    gpu = [s.sample.gpu_freq_mhz for s in samples]
    return (sum(totals) / len(totals), sum(busiest) / len(busiest), sum(gpu) / len(gpu))  # type: ignore[arg-type]


def test_jtop_reads_the_board_tegrastats_reads(board: Board) -> None:
    """jetson-stats' own jtop service runs on the board, reading the model through its testing sysfs; jtop and
    tegrastats windows over the same busy thread agree on power, the busy core and the clocks."""
    rule = board.profile.telemetry.total_power
    with board.transport.stream(BUSY_LOOP.format(s=12), timeout=20) as burner:
        time.sleep(0.5)
        with TelemetryWindow(board, interval_ms=250, sampler=JtopSampler()) as jtop_window, \
                TelemetryWindow(board, interval_ms=250) as tegrastats_window:
            time.sleep(6)
        burner.stop()
    by_jtop, by_tegrastats = jtop_window.stop()[2:], tegrastats_window.stop()[2:]
    assert len(by_jtop) >= 10 and len(by_tegrastats) >= 10, (len(by_jtop), len(by_tegrastats))
    assert all(s.clock == "board" and not s.sample.problems for s in by_jtop)
    jtop_mw, jtop_busy, jtop_gpu = window_means(by_jtop, rule)
    tegra_mw, tegra_busy, tegra_gpu = window_means(by_tegrastats, rule)
    assert abs(jtop_mw - tegra_mw) <= JTOP_POWER_TOLERANCE * tegra_mw, (jtop_mw, tegra_mw)
    assert jtop_busy >= 60 and tegra_busy >= 60, (jtop_busy, tegra_busy)
    assert jtop_gpu == pytest.approx(tegra_gpu, rel=0.01)
    assert {r.name for r in by_jtop[-1].sample.connected_rails} == set(board.profile.virtual.model.rails)

"""`hil devices` (profiles and inventory boards) and `hil probe` (what a board is and how it runs)."""

from __future__ import annotations

import enum
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.deploy.readiness import BACKENDS, readiness_of
from harness.inventory import BoardEntry, SshTransportConfig
from harness.lab import DEFAULT_LEASE_TIMEOUT_S, load_inventory, open_board
from harness.profiles import all_profiles
from harness.results import read_differences
from harness.telemetry.tegrastats import TegrastatsSample

out = Console()
LabOption = Annotated[str | None, typer.Option("--lab", help="lab inventory (default: $JETSON_HIL_LAB or ./lab.yaml)")]


def _reachable(entry: BoardEntry, timeout: float = 2.0) -> str:
    """Whether an SSH server answers on the board's port: it speaks first (`SSH-2.0-…`), so its banner tells,
    with no login (fast, needs no key); an open port that is silent or speaks something else is not SSH."""
    config = entry.transport
    if not isinstance(config, SshTransportConfig):
        return "local"
    try:
        with socket.create_connection((config.host, config.port), timeout=timeout) as sock:
            banner = sock.recv(64)
    except TimeoutError:
        return f"no (port {config.port} open, but no SSH banner within {timeout:g} s)"
    except OSError as exc:
        return f"no ({exc.strerror or exc.__class__.__name__})"
    if banner.startswith(b"SSH-"):
        return "yes"
    return f"no (port {config.port} answers, but not as SSH: {banner[:24]!r})"


def devices(lab: LabOption = None,
            check: Annotated[bool, typer.Option(help="check that each board's SSH port answers")] = True,
            release: Annotated[str | None, typer.Option("--release", metavar="NAME",
                                                        help="take a board out of quarantine")] = None) -> None:
    """List device profiles and the boards in the lab inventory (reachable or not, leased, quarantined or free)."""
    if release is not None:
        inventory = load_inventory(lab)
        inventory.select(release, all_profiles())  # an unknown name is one line listing the boards
        store = inventory.leases()
        held = store.quarantined(release)
        store.release_quarantine(release)
        out.print(f"{release}: released from quarantine ({held.reason})" if held else
                  f"{release}: was not quarantined", highlight=False)
        return
    profiles = all_profiles()
    table = Table(title="Device profiles", title_justify="left")
    for column in ("profile", "model", "SoC", "CUDA", "CPU", "RAM", "power modes (default*)", "precisions"):
        table.add_column(column)
    for profile in profiles.values():
        modes = ", ".join(f"{m.id}:{m.name}{'*' if m.id == profile.default_power_mode else ''}"
                          for m in profile.power_modes)
        table.add_row(profile.name, profile.display_name, profile.soc, profile.cuda_arch,
                      str(profile.cpu_cores), f"{profile.memory_mb // 1024} GB", modes, ",".join(profile.precisions))
    out.print(table)

    inventory = load_inventory(lab)
    boards = Table(title=f"Boards in {inventory.source}", title_justify="left")
    for column in ("board", "profile", "transport", "tags", "reachable", "leased by", "quarantine"):
        boards.add_column(column)
    store = inventory.leases()
    with ThreadPoolExecutor(max_workers=16) as pool:
        reach = list(pool.map(_reachable, inventory.boards)) if check else ["-"] * len(inventory.boards)
    for entry, reachable in zip(inventory.boards, reach, strict=True):
        config = entry.transport
        where = f"ssh {config.user}@{config.host}:{config.port}" if isinstance(config, SshTransportConfig) else "local"
        held = store.holder(entry.name)
        quarantine = store.quarantined(entry.name)
        boards.add_row(entry.name, entry.profile, where, ",".join(entry.tags), reachable,
                       held.describe() if held else "free", quarantine.describe() if quarantine else "")
    out.print(boards)


def _sample_summary(sample: TegrastatsSample, rule: str) -> str:
    power = sample.total_power_mw(rule)
    parts = [f"cpu online {sample.cpu_online}/{len(sample.cpus)}",
             f"gpu {sample.gpu_util_pct if sample.gpu_util_pct is not None else '-'}%",
             f"ram {sample.ram_used_mb:.0f}/{sample.ram_total_mb:.0f} MB" if sample.ram_total_mb else "ram -",
             f"power {power:.0f} mW" if power is not None else "power -"]
    hottest = max(sample.temps_c.items(), key=lambda kv: kv[1], default=None)
    if hottest:
        parts.append(f"hottest {hottest[0]} {hottest[1]:.1f} C")
    return ", ".join(parts)


DeviceOption = Annotated[str, typer.Option("--device", help="board name, profile, tag:X or provider selector")]
LeaseTimeout = Annotated[float, typer.Option(help="seconds to wait for a free board")]


Backend = enum.Enum("Backend", {name: name for name in BACKENDS}, type=str)  # typer's choices
BackendOption = Annotated[Backend | None, typer.Option(
    "--backend", help="the module's backend to check for (default: the board's)")]


def probe(device: DeviceOption, lab: LabOption = None, lease_timeout: LeaseTimeout = DEFAULT_LEASE_TIMEOUT_S,
          backend: BackendOption = None) -> None:
    """Connect to a board and print what it is: model, part number, L4T, JetPack, power mode, clocks, telemetry,
    where a virtual board's userspace differs from its JetPack, and the module's stack line (Python, TensorRT, CUDA
    runtime → the backend it will use, or what it lacks)."""
    with open_board(device, load_inventory(lab), lease_timeout, purpose="hil probe") as board:
        identity = board.identity()
        mode = board.power_mode()
        clocks = board.clocks_status()
        sample = board.telemetry_sample()
        table = Table(title=f"{board.name} ({board.transport.target})", title_justify="left", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        rows = [
            ("profile", board.profile.name),
            ("model", identity.model),
            ("part number", identity.part_number or "unknown"),
            ("SoC", identity.soc or "unknown"),
            ("L4T", str(identity.l4t) if identity.l4t else "unknown"),
            ("JetPack", identity.jetpack or "unknown"),
            ("power mode", f"{mode.name} ({mode.id})"),
            ("clocks", "locked (jetson_clocks)" if clocks.locked else "dynamic"),
            ("telemetry", _sample_summary(sample, board.profile.telemetry.total_power)),
            *(("differs from JetPack", line) for line in read_differences(board)),
        ]
        for key, value in rows:
            table.add_row(key, value)
        out.print(table)
        # whole, on a line of its own (no table wrap): what the module will find and run there, or what it lacks
        line = readiness_of(board, backend.value if backend else None).line()
        out.print(f"module: {line}", soft_wrap=True, markup=False, highlight=False)

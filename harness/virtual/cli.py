"""`hil virtual up|lab|ls|down`: manage virtual Jetson boards by hand, or as a farm in a lab.yaml."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from harness.virtual import boards
from harness.virtual.edge import hub_dir
from harness.virtual.hub import stop_hub
from harness.virtual.recipe import ARCHES, host_arch

#: what Docker accepts as a container name, which is also a valid inventory board name
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

Arch = Enum("Arch", {name: name for name in ARCHES}, type=str)  # type: ignore[misc]

app = typer.Typer(help="Virtual Jetson boards: Docker containers reached over SSH like real boards.",
                  no_args_is_help=True)
out = Console()


@app.command()
def up(profile: Annotated[str, typer.Argument(help="device profile, e.g. xavier-nx")],
       name: Annotated[str | None, typer.Option(help="container name (default virtual-PROFILE[-ARCH])")] = None,
       arch: Annotated[Arch | None, typer.Option(help="the board's CPU architecture: arm64 as on a Jetson, under "
                                                      "qemu-user on an x86_64 machine (default: this machine's)")]
       = None) -> None:
    """Start a virtual board (building its image on first use) and print how to reach it."""
    if name is not None and not NAME.fullmatch(name):
        raise typer.BadParameter(f"{name!r}: a board name is letters, digits, '_', '.' and '-', starting with a "
                                 "letter or digit", param_hint="--name")
    board = boards.up(profile, name, arch.value if arch else None)
    selector = f"virtual:{board.profile}" + ("" if board.arch == host_arch() else f":{board.arch}")
    out.print(f"{board.name} ({board.profile}, {board.arch}) is up: ssh -i {board.key_file} -o UserKnownHostsFile="
              f"{board.known_hosts} -p {board.port} root@127.0.0.1")
    out.print(f"use it with: hil probe --device {selector}   (or the lab.yaml entry below)")
    typer.echo(board.entry().model_dump_json(exclude_none=True))


@app.command()
def lab(profiles: Annotated[list[str], typer.Argument(help="a board per argument: [NAME=]PROFILE[:ARCH], e.g. "
                                                             "xavier-nx or nx2=xavier-nx:arm64")],
        out_file: Annotated[Path, typer.Option("--out", help="the lab inventory to write")] = Path("lab.yaml"),
        tag: Annotated[str, typer.Option(help="tag of every board, for --device tag:TAG")] = "virtual") -> None:
    """Start virtual boards and write a lab.yaml of them: a farm on one machine, run as a real one is
    (`pytest suites --lab lab.yaml --device tag:virtual -n N`)."""
    entries = []
    for index, spec in enumerate(profiles, 1):
        name, _, board_spec = spec.rpartition("=")
        profile, _, arch = board_spec.partition(":")
        name = name or f"{boards.default_name(profile, arch or None)}-{index}"
        if not NAME.fullmatch(name):
            raise typer.BadParameter(f"{name!r}: a board name is letters, digits, '_', '.' and '-'", param_hint=spec)
        board = boards.up(profile, name, arch or None)
        entries.append(board.entry(tags=(tag,)).model_dump(mode="json", exclude_none=True))
        out.print(f"{board.name} ({board.profile}) is up on port {board.port}")
    out_file.write_text(yaml.safe_dump({"boards": entries}, sort_keys=False))
    out.print(f"wrote {out_file}: pytest suites --lab {out_file} --device tag:{tag} -n {len(entries)}")


@app.command("ls")
def list_() -> None:
    """List virtual boards."""
    table = Table()
    for column in ("name", "profile", "arch", "ssh port", "status"):
        table.add_column(column)
    for board in boards.list_boards():
        table.add_row(board.name, board.profile, board.arch, str(board.port), board.status)
    out.print(table)


@app.command()
def down(name: Annotated[str | None, typer.Argument(help="board name")] = None,
         all_: Annotated[bool, typer.Option("--all", help="stop every virtual board, and the virtual IoT Hub")] = False,
         ) -> None:
    """Stop and remove virtual boards."""
    if not (all_ or name):
        raise typer.BadParameter("name a board or pass --all")
    names = [b.name for b in boards.list_boards()] if all_ else [name]
    missing = [each for each in names if not boards.down(each)]
    for each in names:
        out.print(f"{each}: {'no such virtual board' if each in missing else 'removed'}")
    if all_ and stop_hub(hub_dir()):
        out.print("the virtual IoT Hub: stopped")
    if missing:
        raise typer.Exit(code=1)

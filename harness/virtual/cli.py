"""`hil virtual up|ls|down`: manage virtual Jetson boards by hand."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.virtual import boards

#: what Docker accepts as a container name, which is also a valid inventory board name
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

app = typer.Typer(help="Virtual Jetson boards: Docker containers reached over SSH like real boards.",
                  no_args_is_help=True)
out = Console()


@app.command()
def up(profile: Annotated[str, typer.Argument(help="device profile, e.g. xavier-nx")],
       name: Annotated[str | None, typer.Option(help="container name (default virtual-PROFILE)")] = None) -> None:
    """Start a virtual board (building its image on first use) and print how to reach it."""
    if name is not None and not NAME.fullmatch(name):
        raise typer.BadParameter(f"{name!r}: a board name is letters, digits, '_', '.' and '-', starting with a "
                                 "letter or digit", param_hint="--name")
    board = boards.up(profile, name)
    out.print(f"{board.name} ({board.profile}) is up: ssh -i {board.key_file} -o UserKnownHostsFile="
              f"{board.known_hosts} -p {board.port} root@127.0.0.1")
    out.print(f"use it with: hil probe --device virtual:{board.profile}   (or the lab.yaml entry below)")
    typer.echo(board.entry().model_dump_json(exclude_none=True))


@app.command("ls")
def list_() -> None:
    """List virtual boards."""
    table = Table()
    for column in ("name", "profile", "ssh port", "status"):
        table.add_column(column)
    for board in boards.list_boards():
        table.add_row(board.name, board.profile, str(board.port), board.status)
    out.print(table)


@app.command()
def down(name: Annotated[str | None, typer.Argument(help="board name")] = None,
         all_: Annotated[bool, typer.Option("--all", help="stop every virtual board")] = False) -> None:
    """Stop and remove virtual boards."""
    if not (all_ or name):
        raise typer.BadParameter("name a board or pass --all")
    names = [b.name for b in boards.list_boards()] if all_ else [name]
    missing = [each for each in names if not boards.down(each)]
    for each in names:
        out.print(f"{each}: {'no such virtual board' if each in missing else 'removed'}")
    if missing:
        raise typer.Exit(code=1)

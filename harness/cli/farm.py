"""`hil farm status`: every board of the lab with its health, lease holder, quarantine and last run, read from
the lab's lease store (shared by all its controllers when it is PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harness.cli.devices import LabOption
from harness.lab import load_inventory
from harness.lease.store import Holder, Quarantine

app = typer.Typer(help="The lab's boards as a farm: health, leases, quarantine, last runs.", no_args_is_help=True)
out = Console(markup=False, highlight=False, soft_wrap=True)


class Format(str, Enum):
    table = "table"
    json = "json"


def board_states(lab: str | None) -> list[dict[str, Any]]:
    """One record per inventory board: profile, tags, health, holder, quarantine, last run."""
    inventory = load_inventory(lab)
    store = inventory.leases()
    states = []
    for entry in inventory.boards:
        held, quarantine, record = store.holder(entry.name), store.quarantined(entry.name), store.record(entry.name)
        health = ("quarantined" if quarantine and not quarantine.due() else "re-check due" if quarantine
                  else "failing" if record.infra_failures else "ok" if record.at else "unknown")
        states.append({
            "board": entry.name, "profile": entry.profile, "tags": entry.tags, "health": health,
            "holder": held.as_dict() if held else None,
            "quarantine": None if quarantine is None else dataclasses.asdict(quarantine),
            "last_run": {"run": record.last_run, "at": record.at, "outcome": record.outcome,
                         "infra_failures_in_a_row": record.infra_failures} if record.at else None,
        })
    return states


@app.command("status")
def status(lab: LabOption = None,
           output: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table) -> None:
    """Boards, health, lease holder, quarantine reason and last run."""
    states = board_states(lab)
    if output is Format.json:
        out.print(json.dumps(states, indent=1))
        return
    table = Table("board", "profile", "health", "leased by", "quarantine", "last run", title_justify="left")
    for state in states:
        held, quarantine, last = state["holder"], state["quarantine"], state["last_run"]
        table.add_row(state["board"], state["profile"], state["health"],
                      Holder.of(held).describe() if held else "free",
                      Quarantine(**quarantine).describe() if quarantine else "",
                      f"{last['run']} {last['at']}: {last['outcome']}" if last else "")
    out.print(table)

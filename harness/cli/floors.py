"""`hil floors`: the lab's floors from what the farm measured (`hil floors suggest`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness.errors import HarnessError
from harness.gates.suggest import FLOOR_METRICS, OWNERS, Owner, render_yaml, suggest
from harness.history import History
from harness.inventory import TAG_PREFIX
from harness.lab import load_inventory
from harness.profiles import all_profiles
from harness.results.table import Row

app = typer.Typer(help="The lab's throughput floors (lab.yaml `floors:`).", no_args_is_help=True)
#: only the YAML goes to stdout (`> floors.yaml`); what the command says about it goes to stderr
note = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
DEFAULT_LAST = 7


@app.callback()
def floors() -> None:
    """The lab's throughput floors (lab.yaml `floors:`)."""


@app.command("suggest")
def suggest_command(
    history: Annotated[str, typer.Option("--history", help="the results history: SQLAlchemy URL or SQLite file")],
    last: Annotated[int, typer.Option("--last", help="how many of the newest passing runs per configuration")]
    = DEFAULT_LAST,
    device: Annotated[str | None, typer.Option("--device", help="only this board, profile, or tag:X (via --lab)")]
    = None,
    by: Annotated[str, typer.Option("--by", help="floors per board or per profile (its boards' lowest)")] = "board",
    lab: Annotated[Path | None, typer.Option("--lab", help="lab.yaml (for tag:X; default $JETSON_HIL_LAB)")] = None,
) -> None:
    """Print floors, as YAML for lab.yaml's `floors:`, from the last passing runs in the history: per board (or
    profile) and configuration, their worst figure less their spread, rounded down."""
    if last < 1:
        raise HarnessError(f"--last must be 1 or more (the passing runs a floor is taken from), got {last}")
    if by not in OWNERS:
        raise HarnessError(f"--by must be one of {', '.join(OWNERS)}, got {by!r}")
    if "://" not in history and not Path(history).expanduser().is_file():
        raise HarnessError(f"no history file {history}: pass --history a SQLite file `hil history import` wrote "
                           "or a database URL")
    store = History(history)
    rows = _rows(store, device, lab)
    what = f"{device}" if device else "any board"
    if not rows:
        raise HarnessError(f"no passing throughput figures ({', '.join(FLOOR_METRICS)}) of {what} in the history "
                           f"{store.shown}: run the suites first (`pytest suites`) and import their runs "
                           "(`hil history import`)")
    owner: Owner = "board" if by == "board" else "profile"
    found = suggest(rows, last, owner)
    sys.stdout.write(render_yaml(found, source=store.shown))
    sys.stdout.flush()
    kept = sum(len(floors) for floors in found.floors().values())
    note.print(f"{kept} floor(s) for {len(found.floors())} {by}(s) from {len({r.run for r in rows})} passing run(s) "
               f"of {what} in {store.shown} (the last {last} per configuration)")
    for item in found.left_out:
        note.print(f"left out: {item.describe()}: {item.left_out}")
    for line in found.notes:
        note.print(line)


def _rows(store: History, device: str | None, lab: Path | None) -> list[Row]:
    """The passing floor figures of the boards `device` selects (every board when None)."""
    if device is None:
        return store.passing(FLOOR_METRICS)
    if device.startswith(TAG_PREFIX):
        boards = [b.name for b in load_inventory(lab).select(device, all_profiles())]
        return store.passing(FLOOR_METRICS, boards)
    rows = store.passing(FLOOR_METRICS, [device])
    if rows:
        return rows
    rows = [r for r in store.passing(FLOOR_METRICS) if r.profile == device]
    if not rows and store.boards_seen([device]):
        raise HarnessError(f"{device} is in the history {store.shown}, but none of its throughput tests passed "
                           f"({', '.join(FLOOR_METRICS)} with a passing verdict): fix it and run the suites first")
    return rows

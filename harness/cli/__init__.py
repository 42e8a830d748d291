"""`hil`: the harness's command line (devices, probe, golden fixtures, reports, history, telemetry, virtual
boards)."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer
from rich.console import Console

from harness.cli import devices, farm, floors, golden, history, report, telemetry
from harness.errors import HarnessError
from harness.lab import load_providers

app = typer.Typer(help="jetson-hil: test and benchmark object-detection modules on NVIDIA Jetson boards.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("devices")(devices.devices)
app.command("probe")(devices.probe)
app.command("golden")(golden.golden)
app.command("report")(report.report)
app.add_typer(telemetry.app, name="telemetry")
app.add_typer(history.app, name="history")
app.add_typer(farm.app, name="farm")
app.add_typer(floors.app, name="floors")
for _plugin in entry_points(group="jetson_hil.cli"):
    app.add_typer(_plugin.load(), name=_plugin.name)

err = Console(stderr=True)


def main() -> None:
    """Entry point: a HarnessError is one line on stderr and exit status 2, never a traceback."""
    load_providers()
    try:
        app()
    except HarnessError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)

"""`hil telemetry`: turn a tegrastats capture into a tidy CSV or JSON-lines file for reports."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from enum import Enum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from harness.telemetry.tegrastats import TegrastatsSample, parse_file, to_record, to_row

app = typer.Typer(help="Parse board telemetry captured during a run (tegrastats).", no_args_is_help=True)


class OutputFormat(str, Enum):
    csv = "csv"
    json = "json"


@app.callback()
def main() -> None:
    """Parse board telemetry captured during a run (tegrastats)."""


def _write_csv(samples: list[TegrastatsSample], rule: str, out: TextIO) -> None:
    """Columns differ per board (cores, sensors, rails): the header is their union, first seen first."""
    rows = [to_row(sample, rule, index=i) for i, sample in enumerate(samples)]
    header = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(out, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _write_json(samples: list[TegrastatsSample], rule: str, out: TextIO) -> None:
    for sample in samples:
        out.write(json.dumps(to_record(sample, rule)) + "\n")


_WRITERS: dict[OutputFormat, Callable[[list[TegrastatsSample], str, TextIO], None]] = {
    OutputFormat.csv: _write_csv,
    OutputFormat.json: _write_json,
}


def _fail(path: Path, error: OSError) -> typer.Exit:
    """One line for the engineer, no traceback: which file and why."""
    typer.echo(f"error: {path}: {error.strerror or error}", err=True)
    return typer.Exit(code=2)


def _open_output(output: Path | None) -> AbstractContextManager[TextIO]:
    if output is None:
        return nullcontext(sys.stdout)
    return output.open("w", encoding="utf-8", newline="")


@app.command()
def parse(
    file: Annotated[Path, typer.Argument(help="A `tegrastats --logfile` capture, one line per sample.")],
    fmt: Annotated[OutputFormat, typer.Option("--format", help="csv (one row per sample) or json lines.")] = (
        OutputFormat.csv
    ),
    total_power: Annotated[
        str,
        typer.Option(
            "--total-power",
            help='Board power: "auto" (input rail, else sum of rails), "sum", or a rail name such as VDD_IN.',
        ),
    ] = "auto",
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Parse a tegrastats capture into CSV or JSON lines."""
    try:
        samples = parse_file(file)
    except OSError as error:
        raise _fail(file, error) from None
    try:
        with _open_output(output) as out:
            _WRITERS[fmt](samples, total_power, out)
    except OSError as error:
        raise _fail(output or Path("<stdout>"), error) from None

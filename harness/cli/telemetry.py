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

from harness.telemetry.tegrastats import TegrastatsSample, capture_rule, parse_line, to_record, to_row

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
            help='Board power: "auto" (the input rail of the capture, else the sum of rails), "sum", or a rail '
                 "name such as VDD_IN; one rule for the whole capture.",
        ),
    ] = "auto",
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of stdout.")] = None,
    strict: Annotated[bool, typer.Option(help="exit 1 when a line is unparsable, has text that is no tegrastats "
                                              "field, a value impossible, or a sample has no total power")] = False,
) -> None:
    """Parse a tegrastats capture into CSV or JSON lines; say on stderr which lines were not good measurements."""
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise _fail(file, error) from None
    numbered = [(number, parse_line(line)) for number, line in enumerate(lines, 1) if line.strip()]
    samples = [sample for _, sample in numbered if sample.parsed]
    rule = capture_rule(samples, total_power)
    report = CaptureReport.of(file, numbered, rule)
    try:
        with _open_output(output) as out:
            _WRITERS[fmt](samples, rule, out)
    except OSError as error:
        raise _fail(output or Path("<stdout>"), error) from None
    for line in report.lines():
        typer.echo(line, err=True)
    if strict and report.bad:
        raise typer.Exit(code=1)


class CaptureReport:
    """What in a capture is not a good measurement, by line number."""

    def __init__(self, source: Path, total: int, unparsable: list[int], junk: list[tuple[int, tuple[str, ...]]],
                 impossible: list[tuple[int, str]], without_total: list[int], rule: str) -> None:
        self.source, self.total, self.unparsable, self.junk = source, total, unparsable, junk
        self.impossible, self.without_total, self.rule = impossible, without_total, rule

    @classmethod
    def of(cls, source: Path, numbered: list[tuple[int, TegrastatsSample]], rule: str) -> CaptureReport:
        parsed = [(n, s) for n, s in numbered if s.parsed]
        return cls(source, len(numbered), [n for n, s in numbered if not s.parsed],
                   [(n, s.junk) for n, s in parsed if s.junk],
                   [(n, problem) for n, s in parsed for problem in s.problems],
                   [n for n, s in parsed if s.total_power_mw(rule) is None], rule)

    @property
    def bad(self) -> bool:
        return bool(self.unparsable or self.junk or self.impossible or self.without_total)

    def lines(self) -> list[str]:
        out = [f"{self.total - len(self.unparsable)} of {self.total} lines parsed; total power by {self.rule}"]
        if self.unparsable:
            out.append(f"{len(self.unparsable)} unparsable line(s), left out: {_numbers(self.unparsable)}")
        # a damaged line is still parsed (its rails are good), but it is no clean measurement: say where and what
        out += [f"{self.source}: line {n}: not a tegrastats field: {', '.join(map(repr, tokens))}"
                for n, tokens in self.junk]
        out += [f"line {n}: {problem}; the value was dropped" for n, problem in self.impossible]
        if self.without_total:
            out.append(f"{len(self.without_total)} sample(s) without {self.rule} have no total power: "
                       f"{_numbers(self.without_total)}")
        return out


def _numbers(lines: list[int], most: int = 20) -> str:
    shown = ", ".join(map(str, lines[:most]))
    return f"lines {shown}" + (f" and {len(lines) - most} more" if len(lines) > most else "")

"""`hil history`: import runs into the results history, list it, export a run as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError
from harness.history import HISTORY_FILE, History
from harness.report import load_run

app = typer.Typer(help="The results history: one database that every run's rows go to.", no_args_is_help=True)
out = Console(markup=False, highlight=False, soft_wrap=True)
DB = Annotated[str, typer.Option("--db", help="SQLAlchemy URL or SQLite file (default: reports/history.sqlite)")]
DEFAULT_DB = f"reports/{HISTORY_FILE}"


@app.command("import")
def import_runs(runs: Annotated[list[Path], typer.Argument(help="run folders (reports/<run>)")],
                db: DB = DEFAULT_DB) -> None:
    """Add runs to the history; a run already there with the same results is skipped."""
    history = History(db)
    total = 0
    for index, path in enumerate(runs, 1):
        run = load_run(path)
        added = history.import_run(run, say=out.print)
        total += added
        out.print(f"[{index}/{len(runs)}] {run.name}: " + (f"{added} rows" if added else "already in the history"))
    out.print(f"{total} rows added to {history.shown}")


@app.command("ls")
def list_runs(db: DB = DEFAULT_DB) -> None:
    """The runs in the history, oldest first."""
    runs = History(db).runs()
    table = Table("run", "rows", "boards", "first", "last", "imported")
    for record in runs.itertuples(index=False):
        table.add_row(str(record.run), str(record.rows), str(record.boards), str(record.first)[:19],
                      str(record.last)[:19], str(record.imported_at)[:19])
    Console().print(table)


@app.command("export")
def export(run: Annotated[Path, typer.Argument(help="a run folder")],
           parquet: Annotated[Path, typer.Option(help="the Parquet file to write")]) -> None:
    """A run's results as Parquet (pyarrow), typed, for notebooks."""
    data = load_run(run).frame()
    try:
        data.to_parquet(parquet, index=False)
    except OSError as exc:
        raise HarnessError(f"cannot write {parquet}: {exc.strerror or exc}") from None
    out.print(f"wrote {len(data)} rows to {parquet}")

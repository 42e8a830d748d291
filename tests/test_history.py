"""The results history on SQLite and on a real PostgreSQL server: a run imported once, replaced when its results
changed, listed, read back typed; Parquet export; an unreachable database is one line without its password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from harness.errors import HarnessError
from harness.history import History
from harness.report import load_run
from tests.test_report import REPO, make_run


@pytest.fixture(params=["sqlite", "postgresql"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> History:
    if request.param == "sqlite":
        return History(tmp_path / "history.sqlite")
    url = request.getfixturevalue("postgres_url")
    store = History(url)
    with store.engine.begin() as connection:  # one server for the session: each test starts empty
        connection.execute(sa.text("DELETE FROM jetson_hil_results"))
        connection.execute(sa.text("DELETE FROM jetson_hil_runs"))
    return store


def test_a_run_is_imported_once_and_replaced_when_it_changed(history: History, tmp_path: Path) -> None:
    run = make_run(tmp_path, "night-1")
    assert history.import_run(load_run(run)) == 15
    assert history.import_run(load_run(run)) == 0  # the same results: nothing added
    with (run / "results.csv").open("a") as results:  # the run went on after the first import
        results.write((run / "results.csv").read_text().splitlines()[-1] + "\n")
    assert history.import_run(load_run(run)) == 16
    history.import_run(load_run(make_run(tmp_path, "night-2", fps=250.0)))
    listed = history.runs()
    assert list(listed["run"]) == ["night-1", "night-2"] and list(listed["rows"]) == [16, 15]
    data = history.frame(["xnx-01"])
    assert len(data) == 31
    assert data["time"].dt.tz is not None and str(data["batch"].dtype) == "Int64"
    raw = data[(data["metric"] == "raw_fps") & (data["power_mode"] == "MODE_15W")]
    assert sorted(raw["value"]) == [250.0, 300.0]


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    store = History(tmp_path / "history.sqlite")
    with store.engine.begin() as connection:
        connection.execute(sa.text("UPDATE jetson_hil_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(HarnessError, match="schema version 99; this harness reads version 1"):
        History(tmp_path / "history.sqlite")


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "history", "ls", "--db",
                           "postgresql://lab:s3cret@127.0.0.1:9/results"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert "cannot use the history database postgresql+psycopg://lab:***@127.0.0.1:9/results" in done.stderr
    assert "s3cret" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_cli_imports_lists_and_exports_parquet(tmp_path: Path) -> None:
    runs = [make_run(tmp_path, f"night-{i}") for i in (1, 2)]
    db = tmp_path / "history.sqlite"

    def hil(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness", "history", *map(str, args)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)

    first, again = hil("import", *runs, "--db", db), hil("import", runs[0], "--db", db)
    assert first.returncode == 0 and "30 rows added" in first.stdout, first.stdout + first.stderr
    assert "already in the history" in again.stdout
    assert "night-2" in hil("ls", "--db", db).stdout
    exported = hil("export", runs[0], "--parquet", tmp_path / "night-1.parquet")
    assert exported.returncode == 0, exported.stderr
    table = pd.read_parquet(tmp_path / "night-1.parquet")
    assert len(table) == 15 and table["source"].dtype.name == "category"

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
from harness.results import ResultsWriter, RowContext, read_results, verdict_row
from tests.test_floors_suggest import at, night
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
    assert history.import_run(load_run(run)) == 17
    assert history.import_run(load_run(run)) == 0  # the same results: nothing added
    with (run / "results.csv").open("a") as results:  # the run went on after the first import
        results.write((run / "results.csv").read_text().splitlines()[-1] + "\n")
    assert history.import_run(load_run(run)) == 18
    history.import_run(load_run(make_run(tmp_path, "night-2", fps=250.0)))
    listed = history.runs()
    assert list(listed["run"]) == ["night-1", "night-2"] and list(listed["rows"]) == [18, 17]
    data = history.frame(["xnx-01"])
    assert len(data) == 35
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
    assert first.returncode == 0 and "34 rows added" in first.stdout, first.stdout + first.stderr
    assert "already in the history" in again.stdout
    assert "night-2" in hil("ls", "--db", db).stdout
    exported = hil("export", runs[0], "--parquet", tmp_path / "night-1.parquet")
    assert exported.returncode == 0, exported.stderr
    table = pd.read_parquet(tmp_path / "night-1.parquet")
    assert len(table) == 17 and table["source"].dtype.name == "category"


def test_passing_gives_the_measured_figures_of_passed_tests_only(history: History, tmp_path: Path) -> None:
    for day in (1, 2):
        night(tmp_path, f"night-{day}", day, 300.0 + day)
        night(tmp_path, f"night-{day}", day, 100.0 + day, board="orin-02", passed=day == 2)
    other_test = RowContext(run="night-1", board="orin-02", profile="agx-orin", suite="test_correctness", test="t")
    with ResultsWriter(tmp_path / "night-1" / "results.csv") as results:  # a verdict of another test of orin-02
        results.write(verdict_row(other_test, True))
    for day in (1, 2):
        history.import_run(load_run(tmp_path / f"night-{day}"))
    old = RowContext(run="before-verdicts", board="orin-01", profile="agx-orin", power_mode="MAXN", precision="fp16",
                     batch=1, backend="tensorrt", device="cuda:0 Orin", suite="test_throughput", test="t", phase="raw")
    with ResultsWriter(tmp_path / "before-verdicts" / "results.csv") as results:  # no verdict rows: none passed
        results.write(old.row("raw_fps", 500.0, "fps"))
    history.import_run(load_run(tmp_path / "before-verdicts"))
    written = {r for day in (1, 2) for r in read_results(tmp_path / f"night-{day}" / "results.csv")}

    def seen(*args: object, **kwargs: object) -> set[tuple[str, str, str, str | None, float]]:
        rows = history.passing(*args, **kwargs)  # type: ignore[arg-type]
        assert set(rows) <= written and len(set(rows)) == len(rows)  # as written, the time with its zone included
        assert all(r.time.endswith("+00:00") and r.source == "measured" for r in rows)
        return {(r.run, r.board, r.metric, r.phase, r.value) for r in rows}

    assert seen(["raw_fps", "power_mean", "fps_per_w"]) == {  # modeled power and fps_per_w are no figures to keep
        ("night-1", "orin-01", "raw_fps", "raw", 301.0), ("night-2", "orin-01", "raw_fps", "raw", 302.0),
        ("night-2", "orin-02", "raw_fps", "raw", 102.0)}
    assert seen(["raw_fps"], exclude=["night-2"]) == {("night-1", "orin-01", "raw_fps", "raw", 301.0)}
    assert seen(["raw_fps"], boards=["orin-02"]) == {("night-2", "orin-02", "raw_fps", "raw", 102.0)}
    assert seen(["pipeline_fps"], boards=["orin-02", "xnx-01"], exclude=["night-1"]) == {
        ("night-2", "orin-02", "pipeline_fps", "pipeline", 102.0 * 0.9)}
    assert seen(["raw_fps"], boards=[]) == set() and seen(["latency_p99"]) == set()
    assert history.passing(["raw_fps"], exclude=["night-1", "night-2"]) == []


def test_a_runs_rows_and_the_boards_seen_come_back_whole(history: History, tmp_path: Path) -> None:
    night(tmp_path, "night-1", 1, 300.0, spread=None)
    night(tmp_path, "night-1", 1, 90.0, board="orin-02", passed=False)
    history.import_run(load_run(tmp_path / "night-1"))
    history.import_run(load_run(make_run(tmp_path, "night-2")))
    rows = history.run_rows("night-1")
    assert sorted(rows, key=repr) == sorted(read_results(tmp_path / "night-1" / "results.csv"), key=repr)
    assert len(rows) == 12 and {r.time for r in rows} >= {at(1, 0), at(1, 5)}
    assert {r.spread for r in rows if r.board == "orin-01"} == {None}
    assert history.run_rows("ghost") == []
    assert history.boards_seen(["orin-01", "orin-02", "xnx-01", "ghost"]) == {"orin-01", "orin-02", "xnx-01"}
    assert history.boards_seen(["ghost"]) == set() and history.boards_seen([]) == set()

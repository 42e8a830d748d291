"""The results history: every run's rows in one database that nightly runs append to. A SQLite file by default
(no set-up), any SQLAlchemy URL otherwise (PostgreSQL when a farm's controllers share one). The schema is
versioned; a run is imported once (again only when its results changed, replacing its rows)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Collection
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from harness.errors import HarnessError
from harness.gates.baseline import KEY_FIELDS
from harness.report.runs import RunData
from harness.results.table import FIELDS, Row
from harness.results.verdicts import VERDICT
from harness.urls import hide_password

SCHEMA_VERSION = 1
HISTORY_FILE = "history.sqlite"
CHUNK = 50_000

_metadata = sa.MetaData()
_meta = sa.Table("jetson_hil_meta", _metadata, sa.Column("key", sa.String(64), primary_key=True),
                 sa.Column("value", sa.String(256), nullable=False))
_runs = sa.Table("jetson_hil_runs", _metadata, sa.Column("run", sa.String(256), primary_key=True),
                 sa.Column("source", sa.Text, nullable=False),
                 sa.Column("results_sha256", sa.String(64), nullable=False),
                 sa.Column("rows", sa.Integer, nullable=False), sa.Column("imported_at", sa.DateTime(timezone=True)),
                 sa.Column("ended", sa.DateTime(timezone=True)))
_TEXT = {"run", "board", "profile", "power_mode", "precision", "backend", "device", "quantizer", "suite", "test",
         "phase", "metric", "unit", "source"}
_results = sa.Table("jetson_hil_results", _metadata, *(
    sa.Column(name, sa.String(256) if name in _TEXT else sa.Integer if name == "batch"
              else sa.DateTime(timezone=True) if name == "time" else sa.Float, nullable=name not in ("run", "metric"))
    for name in FIELDS), sa.Index("jetson_hil_results_run", "run"),
    # covering the trend's read (`figures`): the database answers it from the index alone
    sa.Index("jetson_hil_results_figure", "metric", "phase", "board", "run", "power_mode", "precision", "batch",
             "value", "source"),
    # the tests that passed (`passing`), from the index alone
    sa.Index("jetson_hil_results_verdict", "metric", "board", "run", "test", "value"))


def database_url(spec: str | Path) -> str:
    """A SQLAlchemy URL, or a path that becomes a SQLite file; postgresql:// goes through psycopg (3), the
    driver the harness installs."""
    text = str(spec)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    scheme, rest = text.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else text


class History:
    """One history database; `import_run`, `runs`, `frame`."""

    def __init__(self, spec: str | Path) -> None:
        self.url = database_url(spec)
        try:
            self.engine = sa.create_engine(self.url)
            shown = hide_password(self.url)
            with self.engine.begin() as connection:
                _metadata.create_all(connection)
                for index in _results.indexes:  # a history made before an index was added gets it now
                    index.create(connection, checkfirst=True)
                found = connection.execute(sa.select(_meta.c.value).where(_meta.c.key == "schema_version")).scalar()
                if found is None:
                    connection.execute(_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                elif int(found) != SCHEMA_VERSION:
                    raise HarnessError(f"history {shown} has schema version {found}; this harness reads version "
                                       f"{SCHEMA_VERSION}: use a new database or the harness that wrote it")
        except (SQLAlchemyError, ModuleNotFoundError) as exc:
            raise HarnessError(f"cannot use the history database {hide_password(self.url)}: {_reason(exc)}") from None
        self.shown = shown

    def import_run(self, run: RunData, say: Callable[[str], None] | None = None) -> int:
        """Rows added: 0 when this run's results are already in, all of them (replacing the old) when changed."""
        results = run.folder / "results.csv"
        digest = hashlib.sha256(results.read_bytes()).hexdigest()
        with self.engine.begin() as connection:
            known = connection.execute(sa.select(_runs.c.results_sha256).where(_runs.c.run == run.name)).scalar()
            if known == digest:
                return 0
            if known is not None:
                connection.execute(_results.delete().where(_results.c.run == run.name))
                connection.execute(_runs.delete().where(_runs.c.run == run.name))
            records = [{**{name: getattr(row, name) for name in FIELDS}, "time": dt.datetime.fromisoformat(row.time)}
                       for row in run.rows]
            for start in range(0, len(records), CHUNK):
                connection.execute(_results.insert(), records[start:start + CHUNK])
                if say is not None and len(records) > CHUNK:
                    say(f"{run.name}: {min(start + CHUNK, len(records))}/{len(records)} rows")
            connection.execute(_runs.insert().values(
                run=run.name, source=str(run.folder), results_sha256=digest, rows=len(records),
                imported_at=dt.datetime.now(dt.timezone.utc), ended=max((r["time"] for r in records), default=None)))
        return len(records)

    def runs(self) -> pd.DataFrame:
        """One line per imported run: run, rows, boards, first and last measurement, imported at."""
        query = (sa.select(_runs.c.run, _runs.c.rows, _runs.c.imported_at,
                           sa.func.min(_results.c.time).label("first"), sa.func.max(_results.c.time).label("last"),
                           sa.func.count(sa.distinct(_results.c.board)).label("boards"))
                 .join(_results, _results.c.run == _runs.c.run, isouter=True).group_by(_runs.c.run, _runs.c.rows,
                                                                                         _runs.c.imported_at)
                 .order_by(sa.func.max(_results.c.time)))
        with self.engine.connect() as connection:
            return pd.read_sql(query, connection)

    def figures(self, boards: list[str], wanted: list[tuple[str, str]]) -> pd.DataFrame:
        """Only the (metric, phase) figures of `boards` that a trend draws: board, metric, config ("MODE prec
        bN"), value, source and the run's end time. Filtered in the database through an index and read as plain
        tuples, so a year of a farm's nights takes seconds, not the whole table."""
        c = _results.c
        config = (sa.func.coalesce(c.power_mode, "") + " " + sa.func.coalesce(c.precision, "") + " b"
                  + sa.func.coalesce(sa.cast(c.batch, sa.String), "")).label("config")
        query = (sa.select(c.board, c.metric, config, c.value, c.source, c.run)
                 .where(sa.or_(*(sa.and_(c.metric == m, c.phase == p) for m, p in wanted)))
                 .where(c.board.in_(boards)))
        columns = ["board", "metric", "config", "value", "source", "run"]
        with self.engine.connect() as connection:
            cursor = connection.execute(query).cursor  # plain DB-API tuples: no Row objects for 400k rows
            data = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
            ends = dict(connection.execute(sa.select(_runs.c.run, _runs.c.ended)).all())
        for name in ("board", "metric", "config", "source"):
            data[name] = data[name].astype("category")
        runs = data.pop("run").astype("category")  # a few hundred runs: look up and parse each end time once
        ended = pd.to_datetime(pd.Series([ends.get(r) for r in runs.cat.categories], dtype=object), utc=True,
                               format="mixed")
        data["ended"] = pd.DatetimeIndex(ended).take(runs.cat.codes.to_numpy())
        return data

    def passing(self, metrics: Collection[str], boards: Collection[str] | None = None,
                exclude: Collection[str] = ()) -> list[Row]:
        """The measured figures of `metrics` (of `boards`) whose test passed (its verdict row says so), from every
        run but those in `exclude`: what a floor may be taken from. A run imported before verdicts were recorded
        has none, so none of its figures."""
        return [_row(record) for record in self._passing(metrics, boards, exclude)]

    def newest_passing(self, metrics: Collection[str], boards: Collection[str], exclude: Collection[str] = (),
                       until: dt.datetime | None = None) -> list[Row]:
        """Per figure (board and configuration, `KEY_FIELDS`), the newest of `passing` measured before `until`: a
        baseline. Only the winners become Rows, so a farm's year is read in seconds."""
        position = [FIELDS.index(name) for name in KEY_FIELDS]
        time = FIELDS.index("time")
        newest: dict[tuple, tuple] = {}
        for record in self._passing(metrics, boards, exclude, until):
            figure = tuple(record[i] for i in position)
            if figure not in newest or record[time] > newest[figure][time]:
                newest[figure] = record
        return [_row(record) for record in newest.values()]

    def _passing(self, metrics: Collection[str], boards: Collection[str] | None, exclude: Collection[str],
                 until: dt.datetime | None = None) -> list[tuple]:
        """Figure rows as plain DB-API tuples in FIELDS order (no SQLAlchemy row processing for a year of rows), of
        passed tests only: the verdicts and the figures are two reads that indexes answer, joined here (a join or an
        EXISTS in the database scans a run's rows per figure)."""
        c = _results.c
        passed = sa.select(c.run, c.board, c.test).where(c.metric == VERDICT, c.value == 1.0)
        query = sa.select(*(c[name] for name in FIELDS)).where(c.metric.in_(list(metrics)), c.source == "measured")
        if boards is not None:
            passed = passed.where(c.board.in_(list(boards)))
            query = query.where(c.board.in_(list(boards)))
        if exclude:
            passed = passed.where(c.run.not_in(list(exclude)))
            query = query.where(c.run.not_in(list(exclude)))
        if until is not None:
            query = query.where(c.time < until)
        tests = {tuple(found) for found in self._read(passed)}
        try:
            with self.engine.connect() as connection:
                found = connection.execute(query).cursor.fetchall()
        except SQLAlchemyError as exc:
            raise HarnessError(f"cannot read the history {self.shown}: {_reason(exc)}") from None
        run, board, test = (FIELDS.index(name) for name in ("run", "board", "test"))
        return [record for record in found if (record[run], record[board], record[test]) in tests]

    def run_rows(self, run: str) -> list[Row]:
        """Every row of one run (none when the history has no run of that name)."""
        return self._rows(sa.select(*(_results.c[name] for name in FIELDS)).where(_results.c.run == run))

    def run_names(self) -> set[str]:
        """Every run the history holds."""
        return {name for (name,) in self._read(sa.select(_runs.c.run))}

    def _rows(self, query: sa.Select) -> list[Row]:
        return [_row(tuple(record)) for record in self._read(query)]

    def _read(self, query: sa.Select) -> list[sa.Row]:
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query).all())
        except SQLAlchemyError as exc:
            raise HarnessError(f"cannot read the history {self.shown}: {_reason(exc)}") from None

    def boards_seen(self, boards: Collection[str], exclude: Collection[str] = ()) -> set[str]:
        """Which of `boards` have a test's verdict in the history, passed or not, in a run other than those in
        `exclude` (read through the verdict index)."""
        c = _results.c
        query = sa.select(c.board).where(c.metric == VERDICT, c.board.in_(list(boards))).distinct()
        if exclude:
            query = query.where(c.run.not_in(list(exclude)))
        return {board for (board,) in self._read(query)}

    def frame(self, boards: list[str] | None = None) -> pd.DataFrame:
        """Every row (of `boards`), typed like a run's frame."""
        query = sa.select(_results)
        if boards:
            query = query.where(_results.c.board.in_(boards))
        with self.engine.connect() as connection:
            data = pd.read_sql(query, connection)
        for name in _TEXT:
            data[name] = data[name].astype("category")
        data["batch"] = data["batch"].astype("Int64")
        data["time"] = pd.to_datetime(data["time"], utc=True)
        return data



def _reason(exc: Exception) -> str:
    """The database's own first line, not SQLAlchemy's wrapping of it."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _row(record: tuple) -> Row:
    """A stored row (FIELDS order) as a results row, its time as results.csv writes it."""
    values = dict(zip(FIELDS, record, strict=True))
    time = values["time"]
    if isinstance(time, str):  # SQLite's text, read without SQLAlchemy's processing
        time = dt.datetime.fromisoformat(time)
    utc = time.replace(tzinfo=dt.timezone.utc) if time.tzinfo is None else time.astimezone(dt.timezone.utc)
    return Row(**{**values, "time": utc.isoformat(timespec="milliseconds")})

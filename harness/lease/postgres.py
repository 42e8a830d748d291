"""The lease store of a farm whose controllers share one PostgreSQL server: a board's lease is a session-level
advisory lock held by a connection of its own, so a controller that dies (even SIGKILLed) drops the connection
and the server frees the board; its holder, quarantine and run record are rows in three small tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from harness.errors import LeaseError
from harness.lease.store import BoardRecord, Holder, Quarantine, now
from harness.urls import hide_password

CONNECT_TIMEOUT_S = 10
#: the server drops a session whose controller vanished (power, network) within about a minute instead of the
#: kernel's two hours, and never ends an idle one: a lease connection is idle for the whole run
SESSION_OPTIONS = ("-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3 "
                   "-c idle_session_timeout=0")
WHAT_TO_DO = "start the server, or point lease_store in the lab inventory at one this controller can reach"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jetson_hil_leases (board text PRIMARY KEY, pid integer, host text, since text,
    purpose text, run text);
CREATE TABLE IF NOT EXISTS jetson_hil_quarantine (board text PRIMARY KEY, reason text, since text, recheck_at text);
CREATE TABLE IF NOT EXISTS jetson_hil_board_runs (board text PRIMARY KEY, last_run text, at text, outcome text,
    infra_failures integer)
"""


def lock_key(name: str) -> int:
    """The advisory lock key of `name`, the same on every controller and Python (hash() is salted per process)."""
    digest = hashlib.blake2b(f"jetson-hil:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: serialises the tables' creation: two controllers' concurrent CREATE TABLE IF NOT EXISTS can otherwise collide
SCHEMA_KEY = lock_key("schema")


def board_key(board: str) -> int:
    return lock_key(f"board:{board}")


@dataclass
class PostgresLease:
    """A held lease: the connection whose session holds the board's advisory lock."""

    board: str
    connection: psycopg.Connection[DictRow]
    holder: Holder

    def release(self) -> None:
        """Forget the holder (only if the row is still ours) and free the lock; again is a no-op."""
        if self.connection.closed:
            return
        try:
            # a lost connection has lost the lock with it: nothing left to free
            with suppress(psycopg.OperationalError):
                self.connection.execute(
                    "DELETE FROM jetson_hil_leases WHERE board = %s AND pid = %s AND host = %s AND since = %s",
                    (self.board, self.holder.pid, self.holder.host, self.holder.since))
                self.connection.execute("SELECT pg_advisory_unlock(%s)", (board_key(self.board),))
        finally:
            self.connection.close()


class PostgresLeaseStore:
    """Leases, quarantine and run records in one PostgreSQL database (see the module's docstring). The password
    comes from the URL, PGPASSWORD or ~/.pgpass (libpq's usual places) and is never shown."""

    def __init__(self, url: str) -> None:
        # a SQLAlchemy URL (postgresql+psycopg://) names its driver; libpq wants the plain scheme
        self.url = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", url)
        self.shown = hide_password(self.url)
        self._password: str | None = None  # only to keep it out of messages
        try:
            self._password = conninfo_to_dict(self.url).get("password")
        except psycopg.Error as exc:
            raise LeaseError(f"lease store {self.shown} is not a valid PostgreSQL URL ({self._reason(exc)}): write it "
                             "as postgresql://user@host:port/database") from None
        self._connection: psycopg.Connection[DictRow] | None = None

    def try_lease(self, board: str, holder: Holder) -> PostgresLease | None:
        self._shared()  # the tables exist before the lease's own connection writes its holder
        connection = self._connect()
        try:
            with self._failing():
                got = connection.execute("SELECT pg_try_advisory_lock(%s) AS got", (board_key(board),)).fetchone()
                if not (got and got["got"]):
                    connection.close()
                    return None
                connection.execute(
                    "INSERT INTO jetson_hil_leases (board, pid, host, since, purpose, run) "
                    "VALUES (%(board)s, %(pid)s, %(host)s, %(since)s, %(purpose)s, %(run)s) "
                    "ON CONFLICT (board) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
                    "since = excluded.since, purpose = excluded.purpose, run = excluded.run",
                    {"board": board, **holder.as_dict()})
        except BaseException:
            connection.close()
            raise
        return PostgresLease(board, connection, holder)

    def holder(self, board: str) -> Holder | None:
        with self._failing():
            connection = self._shared()
            # probe and unlock in one statement: the store's connection never keeps a lock (they are re-entrant
            # per session, so one it kept would make the board look free to this store)
            probe = connection.execute("SELECT CASE WHEN pg_try_advisory_lock(%(key)s) THEN "
                                       "pg_advisory_unlock(%(key)s) ELSE false END AS free",
                                       {"key": board_key(board)}).fetchone()
            if probe and probe["free"]:
                return None
            row = connection.execute("SELECT pid, host, since, purpose, run FROM jetson_hil_leases WHERE board = %s",
                                     (board,)).fetchone()
        return Holder.of(row) if row else Holder(pid=0, host="?", since="?")

    def quarantine(self, board: str, reason: str, recheck_after_s: float | None) -> None:
        recheck = None if recheck_after_s is None else (
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=recheck_after_s)).isoformat(timespec="seconds")
        with self._failing():
            self._shared().execute(
                "INSERT INTO jetson_hil_quarantine (board, reason, since, recheck_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (board) DO UPDATE SET reason = excluded.reason, since = excluded.since, "
                "recheck_at = excluded.recheck_at", (board, reason, now(), recheck))

    def quarantined(self, board: str) -> Quarantine | None:
        with self._failing():
            row = self._shared().execute(
                "SELECT reason, since, recheck_at FROM jetson_hil_quarantine WHERE board = %s", (board,)).fetchone()
        return Quarantine(**row) if row else None

    def release_quarantine(self, board: str) -> None:
        with self._failing():
            self._shared().execute("DELETE FROM jetson_hil_quarantine WHERE board = %s", (board,))

    def record_run(self, board: str, run: str, outcome: str, infra_failure: bool) -> BoardRecord:
        """One statement, so two controllers recording the same board at once both count."""
        with self._failing():
            row = self._shared().execute(
                "INSERT INTO jetson_hil_board_runs AS r (board, last_run, at, outcome, infra_failures) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (board) DO UPDATE SET last_run = excluded.last_run, at = excluded.at, "
                "outcome = excluded.outcome, infra_failures = CASE WHEN excluded.infra_failures > 0 "
                "THEN r.infra_failures + 1 ELSE 0 END "
                "RETURNING last_run, at, outcome, infra_failures",
                (board, run, now(), outcome, 1 if infra_failure else 0)).fetchone()
        assert row is not None  # RETURNING of an upsert always has its row
        return BoardRecord(**row)

    def record(self, board: str) -> BoardRecord:
        with self._failing():
            row = self._shared().execute(
                "SELECT last_run, at, outcome, infra_failures FROM jetson_hil_board_runs WHERE board = %s",
                (board,)).fetchone()
        return BoardRecord(**row) if row else BoardRecord()

    def close(self) -> None:
        """Close the store's own connection (held leases keep theirs); the next call opens a new one."""
        if self._connection is not None:
            self._connection.close()

    def _connect(self) -> psycopg.Connection[DictRow]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row,
                                   application_name="jetson-hil lease store", options=SESSION_OPTIONS)
        except psycopg.Error as exc:
            raise LeaseError(f"cannot reach the lease store {self.shown} ({self._reason(exc)}): {WHAT_TO_DO}") from None

    def _shared(self) -> psycopg.Connection[DictRow]:
        """The store's own connection for probes, quarantine and records, made (with the tables) on first use and
        again after it broke. It never holds a lease: each lease has a connection of its own."""
        if self._connection is None or self._connection.closed:
            connection = self._connect()
            try:
                with self._failing(), connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_KEY,))
                    connection.execute(SCHEMA)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """A database error as one line naming the store, not a psycopg traceback."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise LeaseError(f"lease store {self.shown} failed ({self._reason(exc)}): {WHAT_TO_DO}") from None
        except psycopg.Error as exc:
            raise LeaseError(f"lease store {self.shown} refused a request ({self._reason(exc)}): check that this "
                             "user may create and write the jetson_hil_* tables") from None

    def _reason(self, exc: BaseException) -> str:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        reason = lines[0].removeprefix("connection failed: ")
        return reason.replace(self._password, "***") if self._password else reason


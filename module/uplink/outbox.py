"""Disk-backed outbox: every message waits in SQLite until the broker acknowledged it.

Durability: SQLite in WAL mode. With ``synchronous=NORMAL`` a commit is a write() into the WAL, so it survives a
process crash (SIGKILL, OOM kill) because the kernel still holds the page; a power cut or kernel panic may roll back
the last commits. With ``synchronous=FULL`` (the default) every commit also fsyncs the WAL, so a put that returned
survives a power cut too. On a Jetson a "reboot" is often a power cycle or a watchdog reset, hence FULL by default;
its price is one fsync per put (a few ms on eMMC), well inside a frame budget.
"""

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                                 started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dropped_ranges (first INTEGER PRIMARY KEY, last INTEGER NOT NULL UNIQUE);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', 0), ('dropped', 0);
"""

SYNCHRONOUS_MODES = ("NORMAL", "FULL")


class OutboxLockedError(RuntimeError):
    """Another process holds the outbox: two writers would hand out the same sequence numbers."""


class Outbox:
    """Bounded, persistent FIFO of JSON messages keyed by a sequence number that never repeats.

    One process owns an outbox (an flock on ``PATH.lock``, released by the kernel even on SIGKILL). Within it, all
    methods are thread-safe: the pipeline thread puts while the publisher thread peeks and acks.

    What it produced is on record for whoever checks delivery: per ``run_id`` (one per process that put messages)
    its first and last seq, and the seq ranges dropped on overflow. A consumer can then tell a message lost from
    one dropped on purpose, across crashes and reboots.
    """

    def __init__(self, path: Union[str, os.PathLike], max_messages: int = 100_000, synchronous: str = "FULL",
                 run_id: Optional[str] = None) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = os.fspath(path)
        self.max_messages = max_messages
        self.run_id = run_id
        self.acked = 0  # rows deleted by ack() in this process
        self._lock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        # vermin's union-types check takes any `name | name` for a 3.10 union type; these are flags, hence novm
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)  # novm
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # novm
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxLockedError(f"outbox {self.path} is in use by another process") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"outbox {self.path}: SQLite refused WAL mode (got {mode!r}); use a local disk")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            max_row = self._db.execute("SELECT MAX(seq) FROM messages").fetchone()[0] or 0
            self._last_seq = max(int(meta["last_seq"]), int(max_row))
            self._dropped = int(meta["dropped"])
            self._depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        except BaseException:
            self._release_lock()
            raise

    def put(self, payload: Dict[str, Any]) -> int:
        """Store ``payload`` with a new ``seq`` field; durable when this returns. Drops the oldest when full."""
        with self._lock:
            seq = self._last_seq + 1
            data = json.dumps({**payload, "seq": seq}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            overflow = max(0, self._depth + 1 - self.max_messages)
            with self._transaction():
                self._db.execute("INSERT INTO messages (seq, payload) VALUES (?, ?)", (seq, data))
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
                if self.run_id is not None:
                    self._record_run(self.run_id, seq)
                dropped = self._drop_oldest(overflow) if overflow else 0
            self._last_seq = seq
            self._depth += 1 - dropped
            self._dropped += dropped
            return seq

    def _record_run(self, run_id: str, seq: int) -> None:
        """The run's last seq (inside put's transaction), or its first row. An update then an insert rather than an
        UPSERT (``ON CONFLICT ... DO UPDATE``), which needs SQLite 3.24: Ubuntu 18.04 (JetPack 4) has 3.22."""
        if not self._db.execute("UPDATE runs SET last_seq = ? WHERE run_id = ?", (seq, run_id)).rowcount:
            self._db.execute(
                "INSERT INTO runs (run_id, first_seq, last_seq, started) VALUES (?, ?, ?, ?)",
                (run_id, seq, seq, time.time()),
            )

    def _drop_oldest(self, n: int) -> int:
        """Delete the ``n`` oldest messages (inside put's transaction), counted and kept as seq ranges."""
        victims = [int(r[0]) for r in self._db.execute("SELECT seq FROM messages ORDER BY seq LIMIT ?", (n,))]
        for seq in victims:
            self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
            if not self._db.execute("UPDATE dropped_ranges SET last = ? WHERE last = ?", (seq, seq - 1)).rowcount:
                self._db.execute("INSERT INTO dropped_ranges (first, last) VALUES (?, ?)", (seq, seq))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (len(victims),))
        return len(victims)

    def peek(self, n: int, after: int = 0) -> List[Tuple[int, bytes]]:
        """The oldest ``n`` messages with ``seq > after`` (the publisher passes what it already has in flight)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (after, n)
            ).fetchall()
        return [(int(seq), bytes(data)) for seq, data in rows]

    def ack(self, seqs: List[int]) -> int:
        """Delete acknowledged messages; seqs already dropped or acked are ignored. Returns rows deleted."""
        if not seqs:
            return 0
        with self._lock:
            deleted = 0
            with self._transaction():
                for start in range(0, len(seqs), 500):  # stay below SQLite's bound-parameter limit
                    chunk = list(seqs[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    deleted += self._db.execute(f"DELETE FROM messages WHERE seq IN ({marks})", chunk).rowcount
            self._depth -= deleted
            self.acked += deleted
            return deleted

    def depth(self) -> int:
        """Messages waiting for an acknowledgement."""
        with self._lock:
            return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped on overflow over the outbox's whole life (persisted)."""
        with self._lock:
            return self._dropped

    @property
    def last_seq(self) -> int:
        """Highest sequence number ever assigned (persisted; 0 for a new outbox)."""
        with self._lock:
            return self._last_seq

    def runs(self) -> List[Dict[str, Any]]:
        """Every run that put messages: run_id, first_seq, last_seq, started (epoch s), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT run_id, first_seq, last_seq, started FROM runs ORDER BY first_seq")
            return [{"run_id": r, "first_seq": f, "last_seq": last, "started": s} for r, f, last, s in rows]

    def dropped_ranges(self) -> List[Tuple[int, int]]:
        """Seq ranges (first, last, inclusive) dropped on overflow, oldest first."""
        with self._lock:
            return [(int(f), int(last)) for f, last in self._db.execute(
                "SELECT first, last FROM dropped_ranges ORDER BY first")]

    def file_bytes(self) -> int:
        """What the outbox takes on disk now: the database and its WAL."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._lock_fd < 0:
                return
            self._db.close()
            self._release_lock()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the sqlite3 module's implicit transactions are off)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _release_lock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = -1

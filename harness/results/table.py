"""The results table: a CSV that every pytest-xdist worker appends to, one durable row at a time.

Why CSV: pandas (`pd.read_csv`) and spreadsheets read it as is. Why one shared file rather than a
file per worker: nothing to merge, and a crashed worker's rows are already in place. Each append
takes an inter-process `filelock` (so the header is written exactly once, by whoever finds the file
empty), goes out in a single `write` on an O_APPEND descriptor, and is fsync'd before the lock is
released: a SIGKILL or power loss afterwards cannot take that row with it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, get_args

from filelock import FileLock

from harness.errors import HarnessError

log = logging.getLogger(__name__)

#: measured on the board; modeled by a virtual board; timed on a CPU that qemu-user emulates
Source = Literal["measured", "modeled", "emulated-cpu"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, kw_only=True)
class RowContext:
    """Everything a test's rows share: which run, board and configuration; `row` fills in the observation.

    `backend`, `device` and `quantizer` say what ran the model (e.g. onnxruntime on cpu, int8 made by
    ort-static-qdq); `phase` what span a figure covers (raw, pipeline; empty for a whole test).
    """

    run: str
    board: str
    profile: str
    power_mode: str | None = None
    precision: str | None = None
    batch: int | None = None
    backend: str | None = None
    device: str | None = None
    quantizer: str | None = None
    suite: str
    test: str
    phase: str | None = None

    def row(self, metric: str, value: float, unit: str, source: Source = "measured",
            spread: float | None = None) -> Row:
        context = {f.name: getattr(self, f.name) for f in fields(RowContext)}
        return Row(**context, metric=metric, value=float(value), unit=unit, source=source,
                   spread=None if spread is None else float(spread))


@dataclass(frozen=True, kw_only=True)
class Row(RowContext):
    """One observation: its context, what was observed, and how (measured|modeled).

    `spread` is the median absolute deviation of the per-round values a median came from, relative to that
    median (empty for a single value).
    """

    metric: str
    value: float
    spread: float | None = None
    unit: str
    source: Source = "measured"
    time: str = field(default_factory=utc_now)


FIELDS = tuple(f.name for f in fields(Row))


def _csv_line(values: Iterable[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return out.getvalue()


_HEADER = _csv_line(FIELDS)


class ResultsWriteError(HarnessError):
    """A row could not be written (disk full, file gone): the run must stop, its file stays whole."""


class ResultsWriter:
    """Appends rows to `path` durably; safe to share between processes (each holds its own writer).

    The header is there from the moment the file is opened. A last line cut off by a crash or a full disk is
    moved to `<file>.torn` (with a warning) when the file is next opened, so rows are whole or absent; a row
    that cannot be written is taken back off the file and raised as ResultsWriteError."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(f"{self.path}.lock")
            with self._lock:
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                self._set_aside_torn_tail()
                self._check_header()
        except OSError as exc:
            self.close()
            raise ResultsWriteError(f"cannot open the results file {self.path}: {exc.strerror or exc}") from None

    def _set_aside_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        text = self.path.read_bytes()
        if text.endswith(b"\n"):
            return
        keep = text.rfind(b"\n") + 1
        torn = self.path.with_name(self.path.name + ".torn")
        with torn.open("ab") as aside:
            aside.write(text[keep:] + b"\n")
        os.ftruncate(self._fd, keep)
        message = (f"{self.path}: its last line was cut off (a crash or a full disk while it was written); "
                   f"moved {size - keep} bytes to {torn}")
        log.warning(message)
        warnings.warn(message, stacklevel=3)

    def _check_header(self) -> None:
        """A new file gets the header now; one from another schema version must not get rows in another order."""
        if os.fstat(self._fd).st_size == 0:
            self._append(_HEADER)
            return
        with self.path.open(encoding="utf-8", newline="") as f:
            first = f.readline()
        if first != _HEADER:
            raise HarnessError(f"{self.path}: header {first.strip()!r} is not this harness's {_HEADER.strip()!r}")

    def _append(self, text: str) -> None:
        """One write, fsync'd; on failure the file is cut back to where it was, so no half line stays."""
        before = os.fstat(self._fd).st_size
        data = text.encode("utf-8")
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write (disk full?)")
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise ResultsWriteError(f"cannot write to the results file {self.path}: {exc.strerror or exc}; "
                                    "the rows written before it are whole") from None

    def write(self, row: Row) -> None:
        """Append one row and fsync it before returning."""
        line = _csv_line(asdict(row)[name] for name in FIELDS)
        with self._lock:
            self._append(line)

    def write_all(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.write(row)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _none(text: str) -> str | None:
    return text or None


def _float(text: str) -> float | None:
    return float(text) if text else None


def read_results(path: str | Path) -> list[Row]:
    """Every complete row of a results file. A last line without its newline (cut off mid-write by a
    crash on a filesystem that does not write atomically) is skipped, not an error."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is not None and tuple(reader.fieldnames) != FIELDS:
        raise HarnessError(f"{path}: columns {reader.fieldnames} are not {list(FIELDS)}")
    rows = []
    for record in reader:
        source = record["source"]
        if source not in get_args(Source):
            raise HarnessError(f"{path}:{reader.line_num}: source {source!r} is not one of "
                               f"{', '.join(get_args(Source))}")
        rows.append(Row(
            run=record["run"], board=record["board"], profile=record["profile"],
            power_mode=_none(record["power_mode"]), precision=_none(record["precision"]),
            batch=int(record["batch"]) if record["batch"] else None,
            backend=_none(record["backend"]), device=_none(record["device"]), quantizer=_none(record["quantizer"]),
            suite=record["suite"], test=record["test"], phase=_none(record["phase"]), metric=record["metric"],
            value=float(record["value"]), spread=_float(record["spread"]), unit=record["unit"], source=source,
            time=record["time"],
        ))
    return rows

"""The default lease store: a folder on the controller. A board's lease is a file lock (the OS frees it when the
holder dies); its holder, quarantine and run record are small JSON files beside it."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import LeaseError
from harness.lease.store import BoardRecord, Holder, Quarantine, now
from harness.results.files import replace_atomically

LEASE_DIR_ENV = "JETSON_HIL_LEASE_DIR"


def default_lease_dir() -> Path:
    env = os.environ.get(LEASE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "jetson-hil" / "leases"


@dataclass
class FileLease:
    board: str
    lock: FileLock
    info_path: Path

    def release(self) -> None:
        self.info_path.unlink(missing_ok=True)
        self.lock.release()


class FileLeaseStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.shown = str(folder)
        self._checked = False

    def _writable(self) -> None:
        """Once per store: `acquire` polls `try_lease` every half second, the folder need not be probed each time."""
        if self._checked:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise LeaseError(f"lease folder {self.folder} is not writable ({exc.strerror}): set lease_dir in the lab "
                             f"inventory or ${LEASE_DIR_ENV} to a folder this user can write") from None
        self._checked = True

    def try_lease(self, board: str, holder: Holder) -> FileLease | None:
        self._writable()
        lock = FileLock(self.folder / f"{board}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        info = self.folder / f"{board}.holder.json"
        info.write_text(json.dumps(holder.as_dict()))
        return FileLease(board, lock, info)

    def holder(self, board: str) -> Holder | None:
        if not self.folder.is_dir():
            return None
        lock = FileLock(self.folder / f"{board}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            data = self._read(f"{board}.holder.json")
            return Holder.of(data) if data else Holder(pid=0, host="?", since="?")
        lock.release()
        return None

    def quarantine(self, board: str, reason: str, recheck_after_s: float | None) -> None:
        self._writable()
        recheck = None if recheck_after_s is None else (
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=recheck_after_s)).isoformat(timespec="seconds")
        replace_atomically(self.folder / f"{board}.quarantine.json",
                           json.dumps(asdict(Quarantine(reason, now(), recheck))))

    def quarantined(self, board: str) -> Quarantine | None:
        data = self._read(f"{board}.quarantine.json")
        return Quarantine(**data) if data else None

    def release_quarantine(self, board: str) -> None:
        (self.folder / f"{board}.quarantine.json").unlink(missing_ok=True)

    def record_run(self, board: str, run: str, outcome: str, infra_failure: bool) -> BoardRecord:
        self._writable()
        with FileLock(self.folder / f"{board}.record.lock"):
            before = self.record(board)
            record = BoardRecord(run, now(), outcome, before.infra_failures + 1 if infra_failure else 0)
            replace_atomically(self.folder / f"{board}.record.json", json.dumps(asdict(record)))
        return record

    def record(self, board: str) -> BoardRecord:
        data = self._read(f"{board}.record.json")
        return BoardRecord(**data) if data else BoardRecord()

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / name).read_text())
        except (OSError, ValueError):
            return None

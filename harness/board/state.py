"""Board state: the one owner of every change a session makes to a board, journaled on the board.

Before its first change a session records the board's pristine state (power mode, clocks) and writes a
journal on the board naming its holder; every change (power mode, clocks, module paused, fault rules) is
journaled with the command that undoes it *before* it is made. While the session lives it touches a
heartbeat on the board from a connection of its own; a watchdog on the board (`onboard/watchdog.py`,
started with the journal and again at every boot) undoes the journal once the heartbeat is older than
`timeout_s`: a harness killed with SIGKILL, a cut link or a reboot never leave a board in a test's state
for longer than about that. At its end a session undoes its changes itself and removes the journal.

A new session first settles the board: a journal whose holder is gone (its process dead on this host,
or its heartbeat stale) is restored at once and reported; so is what the watchdog restored since, and the
commands earlier sessions left running are killed (the transport tags every command it starts). Only
then does it record its own pristine state, so a run started right after a killed one records the true
pristine state, not the killed run's leftovers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from harness.board.boot import rc_local_entry
from harness.errors import HarnessError
from harness.transport.base import COMMAND_TAG, Transport

if TYPE_CHECKING:  # Board imports this module
    from harness.board.board import Board

log = logging.getLogger(__name__)
T = TypeVar("T")

STATE_DIR = "/var/lib/jetson-hil/state"
WATCHDOG = "/var/lib/jetson-hil/watchdog.py"
WATCHDOG_SOURCE = Path(__file__).resolve().parent / "onboard" / "watchdog.py"
UNIT = "jetson-hil-watchdog"
DEFAULT_TIMEOUT_S = 60.0
RC_LOCAL_MARK = "# jetson-hil watchdog"


@dataclass(frozen=True)
class Holder:
    """Who journaled the changes: enough to tell later whether it is still alive."""

    session: str
    host: str
    pid: int
    since: float
    #: the tag in the command line of every command this holder's transport starts (see transport.base)
    commands: str = ""

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (session {self.session})"

    def gone(self) -> bool:
        """Known dead: its process no longer runs on this host. Unknown for another host."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


@dataclass(frozen=True)
class Change:
    what: str
    undo: str  # run as root on the board


class BoardState:
    """Journal, heartbeat and restore of one leased board's state for one session."""

    def __init__(self, board: Board, *, timeout_s: float = DEFAULT_TIMEOUT_S, heartbeat_s: float | None = None) -> None:
        self.board = board
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s or max(1.0, timeout_s / 6)
        self.holder = Holder(uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), time.time(),
                             f"{COMMAND_TAG}{board.transport.session}:")
        self.pristine: dict | None = None
        self.changes: list[Change] = []
        self.settled: list[str] = []
        self._lock = threading.RLock()
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._beat_transport: Transport | None = None

    @property
    def clocks_file(self) -> str:
        return f"{STATE_DIR}/clocks"

    # on the board ---------------------------------------------------------------------------------
    def _root(self, command: str, timeout: float = 30, stdin: str | None = None) -> str:
        return self.board.run_root(command, f"board state: `{command[:80]}`", timeout, stdin)

    def _watchdog(self, *args: str) -> str:
        return self._root(f"[ -f {WATCHDOG} ] || exit 0; python3 {WATCHDOG} --state {STATE_DIR} {' '.join(args)}")

    def _write_journal(self) -> None:
        document = {"holder": asdict(self.holder), "created": time.time(), "timeout_s": self.timeout_s,
                    "pristine": self.pristine, "changes": [asdict(c) for c in self.changes]}
        self._root(f"umask 077; cat > {STATE_DIR}/journal.tmp && mv {STATE_DIR}/journal.tmp {STATE_DIR}/journal.json",
                   stdin=json.dumps(document, indent=1))

    def _install(self) -> None:
        """The watchdog script, and its start at boot: a systemd unit where systemd runs, else /etc/rc.local."""
        self._root(f"mkdir -p {STATE_DIR} && cat > {WATCHDOG}.tmp && mv {WATCHDOG}.tmp {WATCHDOG}",
                   stdin=WATCHDOG_SOURCE.read_text())
        boot = f"python3 {WATCHDOG} --state {STATE_DIR}"
        unit = (f"[Unit]\nDescription=jetson-hil board state watchdog\n\n[Service]\nType=simple\nExecStart=/usr/bin/"
                f"{boot}\n\n[Install]\nWantedBy=multi-user.target\n")
        self._root(
            f"if [ -d /run/systemd/system ]; then "
            f"[ -f /etc/systemd/system/{UNIT}.service ] || {{ cat > /etc/systemd/system/{UNIT}.service && "
            f"systemctl daemon-reload && systemctl enable {UNIT} >/dev/null 2>&1; }}; "
            f"else {rc_local_entry(f'{boot} >/dev/null 2>&1 &', RC_LOCAL_MARK)}; fi",
            stdin=unit)

    def _start_watchdog(self) -> None:
        self._root(f"setsid python3 {WATCHDOG} --state {STATE_DIR} >/dev/null 2>&1 </dev/null &")

    # session --------------------------------------------------------------------------------------
    def settle(self) -> list[str]:
        """Restore what a gone holder left (and report what the watchdog restored since), refuse a live one, and
        kill the commands earlier sessions left running (a bench whose SSH session died, a stale tegrastats)."""
        found = json.loads(self._watchdog("--status") or "{}")
        journal, last = found.get("journal"), found.get("last_restore")
        messages = []
        if journal is not None:
            other, age = Holder(**journal["holder"]), found["heartbeat_age_s"]
            if not (other.gone() or age > float(journal.get("timeout_s", self.timeout_s))):
                raise HarnessError(
                    f"{self.board.name} is in use by {other.describe()}: its heartbeat is {age:.0f} s old. "
                    "Leases are not shared between these controllers: point them at one lease folder (lease_dir)")
            record = json.loads(self._watchdog("--restore-now") or "null")
            if record:
                messages.append(_restored("restored now", record))
        elif last and not last.get("reported"):
            messages.append(_restored("the board's watchdog had restored", last))
        if messages:
            self._watchdog("--ack")
        strays = self.board.transport.kill_strays()
        if strays:
            messages.append(f"killed {len(strays)} command(s) an earlier session left running: pids {' '.join(strays)}")
        for message in messages:
            log.warning("%s: %s", self.board.name, message)
        self.settled = messages
        return messages

    def begin(self) -> dict:
        """The pristine state, recorded (and the watchdog armed) before the session's first change."""
        with self._lock:
            if self.pristine is None:
                self._begin()
            assert self.pristine is not None
            return self.pristine

    def _begin(self) -> None:
        mode = self.board.power_mode()
        self._install()
        self.board.clocks.store(self.clocks_file)
        locked = self.board.clocks.show().locked
        self.pristine = {"power_mode": mode.id, "power_mode_name": mode.name, "clocks_locked": locked}
        self._write_journal()
        self._root(f"touch {STATE_DIR}/heartbeat")
        self._start_watchdog()
        self._beat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{self.board.name}", daemon=True)
        self._beat.start()
        log.info("%s: pristine state %s journaled; watchdog armed (%g s)", self.board.name, self.pristine,
                 self.timeout_s)

    def change(self, what: str, undo: str, do: Callable[[], T]) -> T:
        """Journal `undo` (a root shell command that puts back what `do` changes), then `do` it.
        The same undo is journaled once: a second power mode change still returns to the pristine one."""
        self.begin()
        with self._lock:
            if all(c.undo != undo for c in self.changes):
                self.changes.append(Change(what, undo))
                self._write_journal()
        return do()

    def revert(self, undo: str) -> None:
        """Undo one journaled change now (a suite putting back what it changed before the session ends)."""
        with self._lock:
            change = next((c for c in self.changes if c.undo == undo), None)
            if change is None:
                return
            self._root(change.undo, timeout=120)
            self.changes.remove(change)
            self._write_journal()

    def restore(self) -> None:
        """Undo every change, last first, and remove the journal; the watchdog then has nothing to watch."""
        with self._lock:
            if self.pristine is None:
                return
            try:
                for change in reversed(self.changes):
                    self._root(change.undo, timeout=120)
                self._root(f"rm -f {STATE_DIR}/journal.json {STATE_DIR}/heartbeat")
            finally:
                self._stop_heartbeat()
            self.changes.clear()
            self.pristine = None

    def close(self) -> None:
        """Stop the heartbeat without restoring (the watchdog restores within `timeout_s`)."""
        self._stop_heartbeat()

    # heartbeat ------------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        """Touch the heartbeat over a connection of its own, so that a reconnect here never disturbs a
        command on the session's connection; failures are only logged (the watchdog acts on silence)."""
        transport = self._beat_transport = self.board.transport.duplicate()
        command = f"{self.board.sudo}touch {STATE_DIR}/heartbeat"
        while not self._beat_stop.wait(self.heartbeat_s):
            try:
                transport.run(command, timeout=max(5.0, self.heartbeat_s))
            except HarnessError as exc:
                log.debug("%s: heartbeat failed: %s", self.board.name, exc)

    def _stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join(10)
            self._beat = None
        if self._beat_transport is not None:
            with contextlib.suppress(HarnessError):
                self._beat_transport.close()
            self._beat_transport = None
        self._beat_stop = threading.Event()


def _restored(how: str, record: dict) -> str:
    holder = record.get("holder") or {}
    undone = ", ".join(f"{u['what']}{'' if u['exit'] == 0 else ' (undo exit ' + str(u['exit']) + ')'}"
                       for u in record.get("undone", [])) or "nothing to undo"
    if record.get("killed"):
        undone += f"; killed its {len(record['killed'])} leftover process(es)"
    when = time.strftime("%H:%M:%S", time.localtime(record.get("restored_at", 0)))
    return (f"{how} the state left by pid {holder.get('pid')} on {holder.get('host')} at {when} "
            f"({record.get('reason')}): {undone}")

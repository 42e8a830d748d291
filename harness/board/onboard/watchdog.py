#!/usr/bin/env python3
"""Runs ON the board, as root (Python 3.6+: JetPack 4 ships 3.6): puts the board back when the harness is gone.

The harness journals every change it makes to the board (`journal.json`: what it did, and the shell command
that undoes it) before it makes it, and touches `heartbeat` every few seconds while it lives. This
watchdog is started detached by the harness, and again at every boot (systemd unit or /etc/rc.local).
Once the heartbeat is older than the journal's timeout (counted from the boot, when the board booted
since), it runs the undo commands, last change first, records what it did in `last-restore.json`,
removes the journal and exits. Without a journal it exits at once.

    watchdog.py [--state DIR]               watch (one watcher per board: a second one exits)
    watchdog.py [--state DIR] --restore-now  restore at once (a new session settling what a dead holder left)
    watchdog.py [--state DIR] --status       print the journal, the heartbeat's age and the last restore as JSON
    watchdog.py [--state DIR] --ack          mark the last restore as reported (a session has said so)
"""

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time

DEFAULT_STATE = "/var/lib/jetson-hil/state"
POLL_S = 1.0
UNDO_TIMEOUT_S = 120


def _path(state, name):
    return os.path.join(state, name)


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_json(path, document):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(document, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def boot_time():
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def heartbeat_age(state, journal):
    """Seconds since the harness last showed life: its heartbeat, the journal, or this boot, the latest."""
    marks = [boot_time(), journal.get("created", 0.0)]
    with contextlib.suppress(OSError):
        marks.append(os.stat(_path(state, "heartbeat")).st_mtime)
    return time.time() - max(marks)


def kill_commands(tag):
    """Kill the process group of every command whose command line carries `tag` (the holder's commands: a bench
    its dead harness left running would skew the board); their pids."""
    killed = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if tag.encode() not in handle.read():
                    continue
            os.killpg(os.getpgid(int(pid)), 9)
            killed.append(int(pid))
        except OSError:
            continue
    return killed


def restore(state, reason):
    """Kill the holder's commands, undo the journal (last change first), record it, remove the journal.
    Serialised by a lock file."""
    with open(_path(state, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        journal = _read_json(_path(state, "journal.json"))
        if journal is None:
            return None
        tag = (journal.get("holder") or {}).get("commands")
        killed = kill_commands(tag) if tag else []
        undone = []
        for entry in reversed(journal.get("changes", [])):
            try:
                code = subprocess.call(["sh", "-c", entry["undo"]], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=UNDO_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = "timeout"
            undone.append({"what": entry["what"], "undo": entry["undo"], "exit": code})
        record = {"holder": journal.get("holder"), "pristine": journal.get("pristine"), "reason": reason,
                  "restored_at": time.time(), "killed": killed, "undone": undone}
        _write_json(_path(state, "last-restore.json"), record)
        for name in ("journal.json", "heartbeat"):
            with contextlib.suppress(OSError):
                os.unlink(_path(state, name))
        return record


def _claim(state):
    """Be the only watcher: a second one sees the first's pid alive and leaves."""
    pidfile = _path(state, "watchdog.pid")
    try:
        with open(pidfile) as handle:
            other = int(handle.read().strip() or 0)
        if other and other != os.getpid():
            os.kill(other, 0)
            with open(f"/proc/{other}/cmdline", "rb") as handle:
                if b"watchdog.py" in handle.read():
                    return False
    except (OSError, ValueError):
        pass
    with open(pidfile, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    return True


def watch(state):
    if not _claim(state):
        return 0
    while True:
        journal = _read_json(_path(state, "journal.json"))
        if journal is None:
            return 0
        timeout = float(journal.get("timeout_s", 60))
        if heartbeat_age(state, journal) > timeout:
            restore(state, f"no heartbeat from the harness for {timeout:.0f} s")
            return 0
        time.sleep(POLL_S)


def status(state):
    journal = _read_json(_path(state, "journal.json"))
    print(json.dumps({"journal": journal,
                      "heartbeat_age_s": heartbeat_age(state, journal) if journal is not None else None,
                      "last_restore": _read_json(_path(state, "last-restore.json"))}))
    return 0


def main(argv):
    state = argv[argv.index("--state") + 1] if "--state" in argv else DEFAULT_STATE
    if not os.path.isdir(state):
        return 0
    if "--status" in argv:
        return status(state)
    if "--ack" in argv:
        record = _read_json(_path(state, "last-restore.json"))
        if record is not None:
            record["reported"] = True
            _write_json(_path(state, "last-restore.json"), record)
        return 0
    if "--restore-now" in argv:
        record = restore(state, "restored by the next session: its holder had gone")
        print(json.dumps(record))
        return 0
    return watch(state)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

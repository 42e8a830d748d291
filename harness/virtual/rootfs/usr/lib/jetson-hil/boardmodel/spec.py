"""The board's facts (board.json, written from the device profile) and the state it keeps in files."""

from __future__ import annotations

import json
import os

BOARD_FILE = "/etc/jetson-hil/board.json"
MODE_STATE = "/var/lib/nvpmodel/status"  # survives a reboot, as nvpmodel's mode does on a real board
RUN_DIR = "/run/jetson-hil"
CLOCKS_STATE = RUN_DIR + "/clocks_locked"  # a tmpfs-like run folder: clock locks do not survive a reboot


def board() -> dict:
    with open(BOARD_FILE) as f:
        return json.load(f)


def read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def write(path: str, text: str) -> None:
    """Atomically: a reader sees the old or the new file, never half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def current_mode_id(spec: dict) -> int:
    for part in read(MODE_STATE).split():
        if part.startswith("pmode:"):
            return int(part[len("pmode:"):])
    return spec["default_power_mode"]


def mode(spec: dict, mode_id: int | None = None) -> dict:
    wanted = current_mode_id(spec) if mode_id is None else mode_id
    for m in spec["power_modes"]:
        if m["id"] == wanted:
            return m
    raise KeyError(wanted)


def hardware_max(spec: dict, key: str) -> float:
    """The highest clock any mode allows: the silicon's maximum (MAXN is uncapped)."""
    return max(m[key] for m in spec["power_modes"])


def clocks_locked() -> bool:
    return read(CLOCKS_STATE, "0") == "1"


def set_clocks_locked(locked: bool) -> None:
    write(CLOCKS_STATE, "1\n" if locked else "0\n")

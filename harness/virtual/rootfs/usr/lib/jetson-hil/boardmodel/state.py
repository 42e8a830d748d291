"""The model's published state, as the tools read it: light to import, as every tool start pays for it (jtop's
service runs `nvpmodel -q` at every sample)."""

from __future__ import annotations

import json
import time

from .spec import RUN_DIR

STATE_FILE = RUN_DIR + "/model.json"


def read_state(max_age_s: float = 5.0, wait_s: float = 10.0) -> dict:
    """The newest state; waits (bounded) for a model that is starting, fails when it stopped publishing."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(STATE_FILE) as f:
                state = json.load(f)
            if time.monotonic() - state["t"] <= max_age_s:
                return state
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the board model publishes no state in {STATE_FILE}: is jetson-model running?")
        time.sleep(0.05)

"""The module twin under IoT Edge: the module reports what it runs, and takes its thresholds from the twin.

Reported: the model's hash, the backend, device and precision it runs, and the thresholds in force, which the
harness waits for after a deployment (the module that answers is the one it deployed). Desired: `thresholds`
(`conf`, `iou`) change the running pipeline as the control API's PUT /config does; `backend` and `precision` are
fixed when the module starts (the engine is built for them), so a desired value that differs is reported as such
rather than pretended. The twin is the IoT Edge sink's module client (one identity, one connection to edgeHub).
"""

import itertools
import logging
import threading
from typing import Any, Callable

log = logging.getLogger("module.twin")
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
THRESHOLDS = {"conf": "conf_threshold", "iou": "iou_threshold"}


class ModuleTwin:
    """`running()` says what the module runs; `set_config(changes)` applies pipeline changes (raises ValueError)."""

    def __init__(self, client: Any, running: Callable[[], dict], set_config: Callable[[dict], dict]) -> None:
        self._client, self._running, self._set_config = client, running, set_config
        self._stop = threading.Event()

    def start(self) -> "ModuleTwin":
        """Read the twin and report, on a thread of its own: edgeHub may not be up yet when the module starts."""
        threading.Thread(target=self._first_sync, name="module-twin", daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()

    def _first_sync(self) -> None:
        for attempt in itertools.count():
            try:
                self._client.on_twin_desired_properties_patch_received = self.desired
                self.desired(self._client.get_twin().get("desired", {}))
                return
            except Exception as exc:  # the SDK raises its own hierarchy; edgeHub not there yet is one of them
                wait = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                log.warning("module twin: not reachable (%s); again in %.0f s", type(exc).__name__, wait)
                if self._stop.wait(wait):
                    return

    def desired(self, desired: dict) -> None:
        """Apply desired properties (the whole set or a patch) and report the outcome."""
        thresholds = desired.get("thresholds") or {}
        changes = {THRESHOLDS[k]: v for k, v in thresholds.items() if k in THRESHOLDS}
        problems = []
        try:
            config = self._set_config(changes)
        except ValueError as exc:
            problems.append(f"thresholds not applied: {exc}")
            config = self._set_config({})
        running = self._running()
        for key in ("backend", "precision"):
            wanted = desired.get(key)
            if wanted not in (None, "auto", running.get(key)):
                problems.append(f"{key} {wanted!r} needs a restart of the module; it runs {running.get(key)!r}")
        reported = {**running, "thresholds": {k: config[field] for k, field in THRESHOLDS.items()},
                    "config_problems": "; ".join(problems) or None}
        self._client.patch_twin_reported_properties(reported)
        log.info("module twin: reported %s", ", ".join(f"{k}={v}" for k, v in reported.items() if k != "thresholds"))

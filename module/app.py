"""``python -m module run``: the long-running module a board hosts.

Wires model → backend → pipeline → outbox → uplink sink, and serves the control API. The
pipeline can be stopped and started again through the API without reloading the engine.
"""

import logging
import os
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

from . import __version__
from .backends import create_backend
from .decode import Detections, layout_for
from .errors import ModuleError
from .messages import detection_message
from .model import ModelInfo, load_model
from .pipeline import Pipeline, PipelineConfig
from .sources import Frame, open_source
from .twin import ModuleTwin
from .uplink.outbox import Outbox
from .uplink.publisher import Publisher
from .uplink.sinks import open_sink

log = logging.getLogger("module")


class App:
    """One module instance: engine loaded once, pipeline (re)started on demand."""

    def __init__(
        self,
        *,
        model: Optional[str],
        labels: Optional[str],
        backend: str,
        precision: str,
        batch: int,
        device: str,
        source: str,
        frames: Optional[int],
        sink: str,
        state_dir: Path,
        config: PipelineConfig,
        run_id: Optional[str] = None,
        outbox_max: int = 100_000,
        calib_images: Optional[Path] = None,
    ):
        self.model: ModelInfo = load_model(model, labels)
        self.source_spec, self.frames = source, frames
        # opened now so that a bad source fails at start with a clear error; the first start() uses it, so a
        # camera is never opened twice
        self._opened: Optional[Iterator[Frame]] = open_source(source, limit=frames)
        self.backend = create_backend(
            backend, self.model, precision=precision, batch=batch, device=device, calib_images=calib_images
        )
        self.model, self.layout = layout_for(self.model, self.backend)
        self.batch, self.config = batch, config
        self.run_id = run_id or uuid.uuid4().hex[:12]
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self.outbox = Outbox(state_dir / "outbox.sqlite", max_messages=outbox_max, run_id=self.run_id)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ModuleError(f"cannot keep the outbox in --state-dir {state_dir}: {reason}") from None
        uplink = open_sink(sink)
        self.publisher = Publisher(self.outbox, uplink)
        twin_client = uplink.twin_client()  # under IoT Edge: the module twin reports what runs, sets thresholds
        self.twin = ModuleTwin(twin_client, self.running, self.set_config) if twin_client is not None else None
        self.pipeline: Optional[Pipeline] = None
        self.error: Optional[str] = None
        self.started = time.time()
        self._lock = threading.Lock()

    # pipeline ----------------------------------------------------------------------------------------
    def _emit(self, frame: Frame, detections: Detections) -> None:
        frame.ts["emit"] = time.time()
        self.outbox.put(detection_message(self.run_id, frame, detections, self.model))

    def start(self) -> dict:
        with self._lock:
            if self.pipeline is not None and self.pipeline.running:
                return {"status": "running"}
            self.error = None
            frames = self._opened or open_source(self.source_spec, limit=self.frames)
            self._opened = None
            self.pipeline = Pipeline(self.backend, self.layout, frames, self._emit, self.config, batch=self.batch)
            self.pipeline.start()
            threading.Thread(target=self._watch, args=(self.pipeline,), name="pipeline-watch", daemon=True).start()
        return {"status": "running"}

    def _watch(self, pipeline: Pipeline) -> None:
        try:
            pipeline.join()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("pipeline stopped: %s", self.error)

    def stop(self) -> dict:
        with self._lock:
            if self.pipeline is not None:
                self.pipeline.stop()
                self.pipeline.join(timeout=10)
        return {"status": "stopped"}

    # API views -------------------------------------------------------------------------------------
    def health(self) -> dict:
        running = self.pipeline is not None and self.pipeline.running
        status = "error" if self.error else "running" if running else "stopped"
        return {
            "status": status,
            "error": self.error,
            "run_id": self.run_id,
            "model_sha256": self.model.sha256,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def running(self) -> dict:
        """What this module runs, as its twin reports it."""
        return {"model_sha256": self.model.sha256, "backend": self.backend.name, "device": self.backend.device,
                "precision": self.backend.precision}

    def info(self) -> dict:
        return {
            "module": __version__,
            "run_id": self.run_id,
            "pid": os.getpid(),
            "model": str(self.model.path),
            **self.running(),
            "labels": list(self.model.labels or ()),
            "precisions": list(self.backend.precisions),
            "quantizer": self.backend.quantizer,
            "quantizers": self.backend.quantizers,
            "batch": self.batch,
            "input_hw": list(self.backend.input_hw),
            "layout": self.layout.family,
            "source": self.source_spec,
            "versions": self.backend.versions(),
        }

    def stats(self) -> dict:
        idle = {"frames": 0, "fps": 0.0, "latency_ms": {}}
        pipeline = idle if self.pipeline is None else self.pipeline.stats.snapshot()
        return dict(pipeline, uplink=self.publisher.stats())

    def uplink(self) -> dict:
        """What this module produced for the uplink, for a consumer checking delivery: every run's seq range
        (this process's and earlier ones' kept in the outbox), the seq ranges dropped on overflow, the backlog."""
        return dict(
            self.publisher.stats(),
            run_id=self.run_id,
            runs=self.outbox.runs(),
            dropped_ranges=self.outbox.dropped_ranges(),
            max_messages=self.outbox.max_messages,
            file_bytes=self.outbox.file_bytes(),
        )

    def get_config(self) -> dict:
        return self.config.as_dict()

    def set_config(self, changes: dict) -> dict:
        return self.config.update(changes).as_dict()

    # lifecycle -------------------------------------------------------------------------------------
    def serve(self, port: int, autostart: bool, exit_when_done: bool) -> int:
        """Run until SIGTERM/SIGINT (or the source ends, with ``exit_when_done``); returns the exit code."""
        from .api import Controls, ControlServer

        done = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: done.set())
        controls = Controls(self.health, self.info, self.stats, self.uplink, self.get_config, self.set_config,
                            self.start, self.stop)
        try:  # bound first: a port in use fails before anything runs
            server = ControlServer(controls, port=port)
        except OSError as exc:
            raise ModuleError(
                f"cannot serve the control API on 127.0.0.1:{port}: {exc.strerror or exc}; pass --api-port 0 "
                "for any free port"
            ) from None
        self.publisher.start()
        if self.twin is not None:
            self.twin.start()
        if autostart:  # before the API answers, so that a health check never sees a not-yet-started pipeline
            self.start()
        server.start()
        log.info(
            "module %s: run %s, model %s, control API on 127.0.0.1:%d",
            __version__,
            self.run_id,
            self.model.sha256[:12],
            server.port,
        )
        try:
            while not done.wait(0.2):
                if exit_when_done and self.pipeline is not None and not self.pipeline.running:
                    break
        finally:
            self.stop()
            if self.twin is not None:
                self.twin.close()
            self.publisher.stop(timeout=10)
            server.close()
            self.outbox.close()
            self.backend.close()
        return 1 if self.error else 0

"""Control and metrics API on 127.0.0.1 (the harness reaches it through an SSH tunnel).

GET  /health  → {"status": "running"|"stopped"|"error", ...}
GET  /info    → model hash, backend, precision, versions, run id
GET  /stats   → frames, fps, per-stage latency percentiles, uplink counters
GET  /uplink  → what was produced for the uplink: runs with their seq ranges, dropped ranges, backlog
GET  /config  → thresholds and fps cap;  PUT /config with a partial JSON object changes them
POST /start, POST /stop → start or stop the pipeline
"""

import json
import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable

log = logging.getLogger("module.api")
MAX_BODY = 64 * 1024


class ThreadingHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    """http.server.ThreadingHTTPServer, which Python 3.6 lacks (3.7+ defines it the same way)."""

    daemon_threads = True


class Controls:
    """What the API needs from the running module; the app provides the callables."""

    def __init__(
        self,
        health: Callable[[], dict],
        info: Callable[[], dict],
        stats: Callable[[], dict],
        uplink: Callable[[], dict],
        get_config: Callable[[], dict],
        set_config: Callable[[dict], dict],
        start: Callable[[], dict],
        stop: Callable[[], dict],
    ):
        self.routes = {
            ("GET", "/health"): lambda _: health(),
            ("GET", "/info"): lambda _: info(),
            ("GET", "/stats"): lambda _: stats(),
            ("GET", "/uplink"): lambda _: uplink(),
            ("GET", "/config"): lambda _: get_config(),
            ("PUT", "/config"): set_config,
            ("POST", "/start"): lambda _: start(),
            ("POST", "/stop"): lambda _: stop(),
        }


def _handler(controls: Controls) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "jetson-hil-module"

        def _dispatch(self, method: str) -> None:
            route = controls.routes.get((method, self.path.split("?")[0]))
            if route is None:
                self._reply(404, {"error": f"no {method} {self.path}; see /health, /info, /stats, /uplink, /config"})
                return
            body: dict = {}
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413, {"error": f"request body over {MAX_BODY} bytes"})
                return
            if length:
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError as exc:
                    self._reply(400, {"error": f"body is not JSON: {exc}"})
                    return
                if not isinstance(body, dict):
                    self._reply(400, {"error": "body must be a JSON object"})
                    return
            try:
                self._reply(200, route(body))
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def log_message(self, format: str, *args: object) -> None:
            log.debug("api: " + format, *args)

    return Handler


class ControlServer:
    """The HTTP server in a daemon thread; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(self, controls: Controls, host: str = "127.0.0.1", port: int = 0):
        self._server = ThreadingHTTPServer((host, port), _handler(controls))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="control-api", daemon=True)

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

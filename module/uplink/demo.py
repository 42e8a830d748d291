"""Producer driver: puts synthetic detections at a fixed rate through outbox + publisher + sink.

Used by the uplink acceptance tests as a real, killable process, and on a board as a smoke test:

    python -m module.uplink.demo --outbox /var/lib/hil/outbox.db --sink mqtt://127.0.0.1:1883/hil/dets --count 500

stdout gets one JSON object per line: ``{"event": "stats", ...}`` every ``--stats-interval`` s and a final
``{"event": "done", "drained": bool, ...}``; logs go to stderr. Exit status 0 once everything was acknowledged.
"""

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from module.uplink.outbox import Outbox
from module.uplink.publisher import Publisher
from module.uplink.sinks import open_sink


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m module.uplink.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--outbox", required=True, help="SQLite outbox path")
    parser.add_argument("--sink", required=True, help="jsonl:PATH | mqtt://host:port/topic | iotedge:OUTPUT")
    parser.add_argument("--count", type=int, default=100, help="messages to put")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second")
    parser.add_argument("--run-id", default=None, help="run id in every message (default: random)")
    parser.add_argument("--max-messages", type=int, default=100_000, help="outbox bound; the oldest are dropped")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"), help="SQLite synchronous")
    parser.add_argument("--retry-max-s", type=int, default=None, help="MQTT reconnect backoff ceiling")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the last acks")
    parser.add_argument("--stats-interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    options: Dict[str, Any] = {}
    if args.retry_max_s is not None:
        options["retry_max_s"] = args.retry_max_s
    run_id = args.run_id or uuid.uuid4().hex[:12]
    outbox = Outbox(args.outbox, max_messages=args.max_messages, synchronous=args.synchronous)
    publisher = Publisher(outbox, open_sink(args.sink, **options)).start()
    out_lock = threading.Lock()

    def emit(event: str, **extra: Any) -> None:
        line = json.dumps({"event": event, **publisher.stats(), **extra})
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    done = threading.Event()

    def report() -> None:
        while not done.wait(args.stats_interval):
            emit("stats")

    reporter = threading.Thread(target=report, name="demo-stats", daemon=True)
    reporter.start()
    start = time.monotonic()
    for frame_id in range(args.count):
        delay = start + frame_id / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the synthetic camera, not synchronisation
        outbox.put({"run_id": run_id, "frame_id": frame_id, "ts": time.time()})
        publisher.notify()
    drained = publisher.wait_drained(args.drain_timeout)
    publisher.stop(timeout=5.0)
    done.set()
    reporter.join()
    emit("done", drained=drained)
    outbox.close()
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(main())

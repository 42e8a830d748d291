"""Command line: ``python -m module run|bench|info``. Bad input exits 2 with one clear line."""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, List, NoReturn, Optional

from . import __version__
from .backends import PRECISIONS, available_backends
from .errors import ModuleError
from .pipeline import PipelineConfig

DEFAULT_STATE = Path("~/.local/state/jetson-hil-module").expanduser()


def _positive(kind: type) -> Callable[[str], object]:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def _at_least_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 0..65535 (0: any free one), got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr (exit 2), like every other bad input of the module."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="ONNX model (default: the shipped reference detector)")
    parser.add_argument("--labels", help="class names, one per line (default: <model>.labels.txt or ONNX metadata)")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt or onnxruntime (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--batch", type=_positive(int), default=1)
    parser.add_argument(
        "--calib-images", type=Path, help="INT8 calibration images (default for the shipped model: its validation set)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m module", description="jetson-hil reference detection module")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")
    sub.required = True  # an attribute: Python 3.6 has no required= argument

    run = sub.add_parser("run", help="run the pipeline and serve the control API")
    _engine_args(run)
    run.add_argument("--source", default="synthetic", help="synthetic[:N], images:DIR, video:FILE, camera:INDEX")
    run.add_argument("--frames", type=_positive(int), help="stop the source after N frames")
    run.add_argument(
        "--sink", default="jsonl:detections.jsonl", help="jsonl:PATH, mqtt://HOST:PORT/TOPIC or iotedge:OUTPUT"
    )
    run.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where the outbox lives (keep it on disk)")
    run.add_argument("--outbox-max", type=_positive(int), default=100_000,
                     help="outbox bound; the oldest are dropped past it")
    run.add_argument("--api-port", type=_port, default=8470, help="control API port on 127.0.0.1 (0 = any free port)")
    run.add_argument("--run-id", help="run id carried by every message (default: random)")
    run.add_argument("--conf", type=float, default=0.25, help="score threshold")
    run.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    run.add_argument("--fps-cap", type=float, default=0.0, help="limit the source to this rate (0 = unlimited)")
    run.add_argument("--no-autostart", action="store_true", help="wait for POST /start")
    run.add_argument("--exit-when-done", action="store_true", help="exit once a finite source is exhausted")

    bench = sub.add_parser("bench", help="raw engine and pipeline throughput, as JSON")
    _engine_args(bench)
    bench.add_argument("--frames", type=_positive(int), default=300)
    bench.add_argument("--duration", type=_positive(float), help="run each part for about this many seconds instead")
    bench.add_argument(
        "--rounds", type=_positive(int), default=1, help="alternate raw and pipeline this many times; report medians"
    )
    bench.add_argument("--warmup", type=_at_least_zero, default=20, help="warm-up iterations (batches) before timing")
    bench.add_argument("--threads", type=_positive(int), help="CPU threads for onnxruntime (default: all cores)")
    bench.add_argument("--json", type=Path, help="write the result here instead of stdout")

    sub.add_parser("info", help="backends available here and their versions")
    return parser


def _run(args: argparse.Namespace) -> int:
    from .app import App

    config = PipelineConfig().update({"conf_threshold": args.conf, "iou_threshold": args.iou, "fps_cap": args.fps_cap})
    app = App(
        model=args.model,
        labels=args.labels,
        backend=args.backend,
        precision=args.precision,
        batch=args.batch,
        device=args.device,
        calib_images=args.calib_images,
        source=args.source,
        frames=args.frames,
        sink=args.sink,
        state_dir=args.state_dir,
        config=config,
        run_id=args.run_id,
        outbox_max=args.outbox_max,
    )
    return app.serve(args.api_port, autostart=not args.no_autostart, exit_when_done=args.exit_when_done)


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    result = run_bench(
        args.model,
        labels=args.labels,
        frames=args.frames,
        duration_s=args.duration,
        rounds=args.rounds,
        batch=args.batch,
        warmup=args.warmup,
        precision=args.precision,
        backend_name=args.backend,
        device=args.device,
        calib_images=args.calib_images,
        threads=args.threads,
    )
    text = json.dumps(result, indent=2)
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n")
        except OSError as exc:
            raise ModuleError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
    else:
        print(text)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "bench":
            return _bench(args)
        print(json.dumps({"module": __version__, "backends": available_backends()}, indent=2))
        return 0
    except (ModuleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

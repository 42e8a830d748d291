"""What the module's wheelhouse holds per JetPack: resolves module/requirements.txt with the package index for
JetPack 4.6 (Python 3.6, glibc 2.27), 5.1 (3.8, 2.31) and 6.x (3.10, 2.35) on aarch64, and prints every
distribution's version per target, the total size and the time taken (first resolution, then from the cache).

    python benchmarks/jetpack_wheels.py [--cache DIR] [--skip opencv-python-headless ...]

Without --cache it resolves into a fresh temporary cache, so the first column of times is a real resolution (pip's
own HTTP cache still applies).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.deploy import wheelhouse as wh  # noqa: E402
from harness.deploy.bundle import requirements_text  # noqa: E402

JETPACKS = {
    "JetPack 4.6": wh.PythonTarget(3, 6, "aarch64", (2, 27)),
    "JetPack 5.1": wh.PythonTarget(3, 8, "aarch64", (2, 31)),
    "JetPack 6.x": wh.PythonTarget(3, 10, "aarch64", (2, 35)),
}


def _name_version(wheel: str) -> tuple[str, str]:
    name, version = wheel.split("-")[:2]
    return wh.normalized_name(name), version


def resolve(cache: Path, skip: list[str], console: Console) -> dict[str, dict]:
    wh.CACHE_DIR = cache
    requirements = wh.requirements_for(requirements_text(), skip)
    results = {}
    for jetpack, target in JETPACKS.items():
        started = time.monotonic()
        folder = wh.wheelhouse(requirements, target, console)
        first = time.monotonic() - started
        started = time.monotonic()
        wh.wheelhouse(requirements, target, console)
        cached = time.monotonic() - started
        wheels = sorted(folder.glob("*.whl"))
        built = {p.name for p in (folder / ".built").glob("*.whl")}
        results[jetpack] = {
            "target": target,
            "versions": {_name_version(p.name)[0]: _name_version(p.name)[1] + (" (built)" if p.name in built else "")
                         for p in wheels},
            "mb": sum(p.stat().st_size for p in wheels) / 1e6,
            "first_s": first,
            "cached_s": cached,
        }  # fmt: skip
    return results


def table(results: dict[str, dict]) -> str:
    names = sorted({name for result in results.values() for name in result["versions"]})
    header = ["distribution", *(f"{jp} ({r['target'].short_tag})" for jp, r in results.items())]
    rows = [[name, *(r["versions"].get(name, "-") for r in results.values())] for name in names]
    rows += [["total MB", *(f"{r['mb']:.1f}" for r in results.values())],
             ["seconds (first)", *(f"{r['first_s']:.1f}" for r in results.values())],
             ["seconds (cached)", *(f"{r['cached_s']:.4f}" for r in results.values())]]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join("{:<%d}" % w for w in widths) + " |"  # noqa: UP031
    out = [line.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line.format(*row) for row in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="wheel cache folder (default: a fresh temporary one)")
    parser.add_argument("--skip", action="append", default=[], help="leave this distribution out (repeatable)")
    args = parser.parse_args()
    console = Console(stderr=True)
    if args.cache:
        results = resolve(args.cache, args.skip, console)
    else:
        with tempfile.TemporaryDirectory(prefix="jetson-hil-wheels-") as tmp:
            results = resolve(Path(tmp), args.skip, console)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

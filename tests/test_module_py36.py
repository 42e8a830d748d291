"""The board-side module stays runnable on JetPack 4's Python 3.6: vermin, configured by vermin.ini, as
scripts/test.sh runs it, passes on module/ and fails on a copy with one newer construct planted in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ci import unavailable

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "vermin.ini"


def vermin(*paths: Path) -> subprocess.CompletedProcess[str]:
    """The check scripts/test.sh runs: `vermin --config-file vermin.ini PATHS` (every option is in the file)."""
    script = Path(sys.executable).parent / "vermin"  # .venv/bin/vermin, as scripts/test.sh calls it
    if not script.is_file():
        unavailable(f"vermin not installed beside {sys.executable} (pip install -e '.[test]')")
    command = [str(script), "--config-file", str(CONFIG), *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


#: what runs on the board's own python3: the module, and the watchdog and stack probe the harness sends
BOARD_SIDE = ("module", "harness/board/onboard")


def test_scripts_test_sh_runs_this_check() -> None:
    command = f".venv/bin/vermin --config-file vermin.ini {' '.join(BOARD_SIDE)}\n"
    assert command in (REPO / "scripts" / "test.sh").read_text()


def test_the_board_side_code_runs_on_python_3_6() -> None:
    result = vermin(*(REPO / path for path in BOARD_SIDE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Minimum required versions: 3.6" in result.stdout


def copy_of_module(target: Path) -> Path:
    """module/'s Python files (module/training/ too, which the check leaves out) under `target`/module."""

    def not_python(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "__pycache__" or (not n.endswith(".py") and not Path(folder, n).is_dir())]

    return Path(shutil.copytree(REPO / "module", target / "module", ignore=not_python))


# (file, text appended to it, the version vermin must name, what it must say)
PLANTED = {
    "walrus": ("stats.py", "\n\ndef _planted(xs):\n    if (n := len(xs)) > 1:\n        return n\n", "3.8",
               "named expressions"),
    "future-annotations": ("errors.py", "\nfrom __future__ import annotations\n", "3.7", "__future__.annotations"),
    "union-annotation": ("uplink/outbox.py", "\n\ndef _planted(x: int | None) -> None:\n    pass\n", "3.10",
                         "union types"),
    "builtin-generic": ("decode.py", "\n\ndef _planted(x: list[int]) -> None:\n    pass\n", "3.9",
                        "builtin generic type annotation"),
}


@pytest.mark.parametrize("plant", sorted(PLANTED))
def test_a_planted_newer_construct_fails_the_check(tmp_path: Path, plant: str) -> None:
    name, code, version, what = PLANTED[plant]
    module = copy_of_module(tmp_path)
    target = module / name
    target.write_text(target.read_text() + code)
    result = vermin(module)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    print(f"\nplanted {plant} in module/{name}: vermin exited {result.returncode}:\n" + "\n".join(lines))
    assert result.returncode != 0, result.stdout
    flagged = [line for line in lines if line.rstrip().endswith(str(target))]
    assert flagged and version in flagged[0], lines  # e.g. "!2, 3.8      /tmp/.../module/stats.py"
    assert any(what in line and line.rstrip().endswith(version) for line in lines), lines  # "... requires !2, 3.8"
    assert "Target versions not met:   3.6-" in result.stdout


def test_module_training_is_not_checked(tmp_path: Path) -> None:
    """Training needs torch and never goes to a board (harness/deploy/bundle.py leaves it out)."""
    module = copy_of_module(tmp_path)
    target = module / "training" / "__init__.py"
    target.write_text(target.read_text() + "\nfrom __future__ import annotations\n")
    result = vermin(module)
    assert result.returncode == 0, result.stdout

"""Result files replaced whole: written beside the target, fsync'd, then renamed over it, so a crash or a full
disk leaves the previous version or the new one, never a torn or empty file."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError


def replace_atomically(path: str | Path, text: str) -> Path:
    """Write `text` to `path` all or nothing; a failure is a HarnessError naming the file (the old one stays)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target

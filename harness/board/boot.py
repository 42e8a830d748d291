"""Starting something at a board's boot without systemd: a line in /etc/rc.local (what a Jetson's
rc-local.service runs, and what a virtual board's init runs)."""

from __future__ import annotations

import shlex


def rc_local_entry(line: str, mark: str) -> str:
    """Root shell that adds `line` to /etc/rc.local once (recognised by `mark`), creating the file if needed."""
    q = shlex.quote
    return (f"[ -f /etc/rc.local ] || printf '#!/bin/sh\\n' > /etc/rc.local; chmod 755 /etc/rc.local; "
            f"grep -qF {q(mark)} /etc/rc.local || echo {q(f'{line} {mark}')} >> /etc/rc.local")

"""Turn a command's output, arriving in arbitrary chunks, into text lines.

Both the SSH and the local transport stream output as it comes; they share this so a line split
across two reads, a UTF-8 character split across two reads, and a terminal's CRLF all come out
the same whichever transport carried them.
"""

from __future__ import annotations

import codecs


class LineSplitter:
    """Accumulates byte chunks and hands back complete lines (no line ending, undecodable bytes replaced)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> list[str]:
        """Add a chunk; return the lines it completed."""
        *complete, self._partial = (self._partial + self._decoder.decode(chunk)).split("\n")
        return [_strip_cr(line) for line in complete]

    def flush(self) -> list[str]:
        """End of output: return the last line if it had no newline."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        return [_strip_cr(rest)] if rest else []


def _strip_cr(line: str) -> str:
    """A pty (used for SSH streams) ends lines with CRLF; callers want the text only."""
    return line[:-1] if line.endswith("\r") else line

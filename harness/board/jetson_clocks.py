"""jetson_clocks: is the board's clock locked at max, and lock / store / restore it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import ParseError
from harness.transport.base import Transport

_FREQ_RE = re.compile(r"^(?P<name>cpu\d+|GPU|EMC):?\s+(?:Online=(?P<online>\d)\s+)?.*?"
                      r"MinFreq=(?P<min>\d+)\s+MaxFreq=(?P<max>\d+)\s+CurrentFreq=(?P<cur>\d+)")
_POWER_RE = re.compile(r"^NV Power Mode:\s*(?P<name>\w+)")
_ONLINE_RE = re.compile(r"^Online CPUs:\s*(?P<list>\S+)")


@dataclass(frozen=True)
class ClockDomain:
    """One clock: CPU cores in kHz, GPU and EMC in Hz, as jetson_clocks prints them."""

    name: str
    min: int
    max: int
    current: int
    online: bool = True

    @property
    def locked(self) -> bool:
        return self.min == self.max == self.current


@dataclass(frozen=True)
class ClocksStatus:
    domains: tuple[ClockDomain, ...]
    online_cpus: str | None
    power_mode: str | None

    def domain(self, name: str) -> ClockDomain | None:
        return next((d for d in self.domains if d.name == name), None)

    @property
    def locked(self) -> bool:
        """jetson_clocks is in effect when every online CPU, the GPU and the EMC run at Min = Max = Current."""
        active = [d for d in self.domains if d.online]
        return bool(active) and all(d.locked for d in active)


def parse_show(text: str) -> ClocksStatus:
    """Parse `jetson_clocks --show`."""
    domains: list[ClockDomain] = []
    online: str | None = None
    mode: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        match = _FREQ_RE.match(line)
        if match:
            domains.append(ClockDomain(match["name"], int(match["min"]), int(match["max"]), int(match["cur"]),
                                       online=match["online"] != "0"))
        elif m := _POWER_RE.match(line):
            mode = m["name"]
        elif m := _ONLINE_RE.match(line):
            online = m["list"]
    if not domains:
        raise ParseError(f"jetson_clocks --show: no 'MinFreq=.. MaxFreq=.. CurrentFreq=..' lines in "
                         f"{text.strip()[:120]!r}")
    return ClocksStatus(tuple(domains), online, mode)


class JetsonClocks:
    """jetson_clocks on one board (all calls need root: `sudo` is the board's command prefix)."""

    def __init__(self, transport: Transport, sudo: str = "") -> None:
        self._transport = transport
        self._sudo = sudo

    def show(self) -> ClocksStatus:
        return parse_show(self._transport.run(f"{self._sudo}jetson_clocks --show", timeout=30).check().stdout)

    def store(self, path: str) -> None:
        self._transport.run(f"{self._sudo}jetson_clocks --store {path}", timeout=30).check()

    def restore(self, path: str) -> None:
        self._transport.run(f"{self._sudo}jetson_clocks --restore {path}", timeout=30).check()

    def lock(self) -> None:
        """Pin CPU, GPU and EMC at the current mode's maximum."""
        self._transport.run(f"{self._sudo}jetson_clocks", timeout=60).check()

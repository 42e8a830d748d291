"""nvpmodel: list the board's power modes, query the current one, switch modes.

Mode ids and names differ per board and per JetPack release, so they are always read from the
board (`nvpmodel -p --verbose`), never hard-coded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import CommandFailed, ParseError
from harness.transport.base import Transport

_MODEL_RE = re.compile(r"POWER_MODEL:\s*ID=(?P<id>\d+)\s+NAME=(?P<name>\w+)")
_DEFAULT_RE = re.compile(r"PM_CONFIG:\s*DEFAULT=(?P<name>\w+)\((?P<id>\d+)\)")
_SETTING_RE = re.compile(r"^NVPM VERB:\s+(?P<param>\w+)\s+(?P<arg>\w+)\s+(?P<value>\S+)\s*$")
_QUERY_RE = re.compile(r"NV Power Mode:\s*(?P<name>\w+)")
_REBOOT_RE = re.compile(r"reboot required", re.IGNORECASE)
_ERROR_RE = re.compile(r"NVPM ERROR:?\s*(?P<msg>.*)")


@dataclass(frozen=True)
class NvpMode:
    """One POWER_MODEL block with its settings (param, arg) -> value."""

    id: int
    name: str
    settings: dict[tuple[str, str], str] = field(default_factory=dict, compare=False)

    @property
    def online_cores(self) -> int | None:
        flags = [v for (param, _), v in self.settings.items() if param == "CPU_ONLINE"]
        return sum(1 for v in flags if v == "1") if flags else None

    def max_freq(self, param_prefix: str) -> int | None:
        """MAX_FREQ of the first clock whose parameter starts with `param_prefix` (e.g. 'CPU', 'GPU')."""
        for (param, arg), value in self.settings.items():
            if param.startswith(param_prefix) and arg == "MAX_FREQ":
                return int(value)
        return None


@dataclass(frozen=True)
class NvpmodelConfig:
    modes: tuple[NvpMode, ...]
    default_id: int

    def by_id(self, mode_id: int) -> NvpMode:
        for mode in self.modes:
            if mode.id == mode_id:
                return mode
        raise KeyError(mode_id)


@dataclass(frozen=True)
class PowerModeState:
    id: int
    name: str


def parse_verbose(text: str) -> NvpmodelConfig:
    """Parse `nvpmodel -p --verbose`: the default and every POWER_MODEL block with its settings."""
    default = _DEFAULT_RE.search(text)
    modes: list[NvpMode] = []
    current: NvpMode | None = None
    for line in text.splitlines():
        model = _MODEL_RE.search(line)
        if model:
            current = NvpMode(int(model["id"]), model["name"])
            modes.append(current)
            continue
        setting = _SETTING_RE.match(line)
        if current is not None and setting:
            current.settings[(setting["param"], setting["arg"])] = setting["value"]
    if not modes or default is None:
        raise ParseError("nvpmodel -p --verbose: expected 'PM_CONFIG: DEFAULT=NAME(ID)' and "
                         "'POWER_MODEL: ID=n NAME=x' lines")
    return NvpmodelConfig(tuple(modes), int(default["id"]))


def parse_query(text: str) -> PowerModeState:
    """Parse `nvpmodel -q`: `NV Power Mode: NAME` with the id on the next line (warnings may precede)."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        match = _QUERY_RE.search(line)
        if match:
            following = next((s for s in lines[index + 1:] if s), "")
            if following.isdigit():
                return PowerModeState(int(following), match["name"])
    raise ParseError(f"nvpmodel -q: expected 'NV Power Mode: NAME' then the id, got {text.strip()[:120]!r}")


class Nvpmodel:
    """nvpmodel on one board; setting needs root (`sudo` is the board's command prefix)."""

    def __init__(self, transport: Transport, sudo: str = "") -> None:
        self._transport = transport
        self._sudo = sudo

    def config(self) -> NvpmodelConfig:
        result = self._transport.run("nvpmodel -p --verbose", timeout=30)
        return parse_verbose(result.check().stdout + result.stderr)

    def query(self) -> PowerModeState:
        result = self._transport.run("nvpmodel -q", timeout=30).check()
        return parse_query(result.stdout + "\n" + result.stderr)

    def set(self, mode_id: int, *, accept_reboot: bool = False) -> bool:
        """Switch to `mode_id`; True when the switch needs a reboot (answered NO unless `accept_reboot`)."""
        answer = "YES\n" if accept_reboot else "NO\n"
        result = self._transport.run(f"{self._sudo}nvpmodel -m {int(mode_id)}", timeout=60, stdin=answer)
        output = result.stdout + "\n" + result.stderr
        error = _ERROR_RE.search(output)
        if error or not result.ok:
            detail = error["msg"].strip() if error else (output.strip().splitlines() or ["no output"])[-1]
            raise CommandFailed(f"{self._transport.target}: nvpmodel -m {mode_id} failed: {detail}")
        return bool(_REBOOT_RE.search(output))

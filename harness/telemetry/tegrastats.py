"""Tolerant parser for `tegrastats` lines, from JetPack 4 (Nano, TX2, AGX Xavier) to JetPack 7.

Every board and release prints a slightly different line, and a benchmark must not lose a whole
power capture because one field changed shape. So `parse_line` never raises: it reads the fields
it knows and keeps any text it does not understand in `TegrastatsSample.extra`. Tolerant is not
credulous: a line with no tegrastats field at all, and a physically impossible value (which is
dropped, not kept), are listed in `TegrastatsSample.problems` for the caller to count and report;
text that has no field's shape at all (markup such as `**GR3D_FREQ**`, a mangled token, stray words)
is listed in `TegrastatsSample.junk`, apart from the unknown-but-well-formed fields of newer boards.

Total power follows NVIDIA's rule: `POM_5V_IN` (Nano/TX1) or `VDD_IN` (TX2, Xavier NX, Orin NX/Nano)
is the board input and already contains the sub-rails; boards without an input rail (AGX Xavier,
AGX Orin) are totalled as the sum of their rails, skipping the unconnected `NC` channels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import ParseError

NOT_CONNECTED = "NC"
INPUT_RAILS = ("POM_5V_IN", "VDD_IN")
OFFLINE_TEMP_C = -256.0
#: beyond these a reading is corrupt, not a measurement: no Jetson rail carries 200 W, no sensor reads above
#: 150 C while the board still runs, and a load is a share of 100 %
MAX_RAIL_MW = 200_000.0
TEMP_RANGE_C = (-100.0, 150.0)  # real TX2 captures read -51 C on cold-reporting sensors
MAX_LOAD_PCT = 100.0
_ROW_SCALARS = ("gpu_util_pct", "gpu_freq_mhz", "emc_util_pct", "ram_used_mb", "ram_total_mb", "swap_used_mb")

_NUM = r"[0-9]+(?:\.[0-9]+)?"
_END = r"(?= |$)"
_MB_PER_UNIT = {"k": 1 / 1024, "": 1 / (1024 * 1024), "M": 1.0, "G": 1024.0}

_TIMESTAMP_RE = re.compile(r"([0-9]{2}-[0-9]{2}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2})" + _END)
_MEMORY_RE = re.compile(
    rf"(?P<name>RAM|SWAP|IRAM) (?P<used>{_NUM})/(?P<total>{_NUM})(?P<unit>[kMG]?)B"
    r"(?: ?\((?:lfb|cached) [^() ]*\))?" + _END
)
_CPU_ITEM = rf"(?:off|{_NUM}%(?:@[0-9]+)?)"
_CPU_RE = re.compile(rf"CPU \[(?P<items>{_CPU_ITEM}(?:,{_CPU_ITEM})*)\](?:@(?P<freq>[0-9]+))?" + _END)
_CPU_ITEM_RE = re.compile(rf"(?P<load>{_NUM})%(?:@(?P<freq>[0-9]+))?")
_MTS_RE = re.compile(rf"MTS fg (?P<fg>{_NUM})% bg (?P<bg>{_NUM})%" + _END)
_LOAD_RE = re.compile(
    rf"(?P<name>[A-Z][A-Z0-9_]*_FREQ) (?P<value>(?=[0-9.]*%|@)(?:(?P<util>{_NUM})%)?"
    r"(?:@(?:(?P<freq>[0-9]+)|\[(?P<freqs>[0-9]+(?:,[0-9]+)*)\]))?)" + _END
)
_TEMP_RE = re.compile(rf"(?P<name>[A-Za-z][A-Za-z0-9_]*)@(?P<cur>-?{_NUM})C(?:/-?{_NUM}C)?" + _END)
_RAIL_VALUE = rf"({_NUM})(m?W)?"
_RAIL_RE = re.compile(
    rf"(?P<name>[A-Za-z][A-Za-z0-9_]*) {_RAIL_VALUE}/{_RAIL_VALUE}(?:/{_RAIL_VALUE})?" + _END
)
_ENGINE_RE = re.compile(
    r"(?P<name>(?:APE|NVENC[0-9]*|NVDEC[0-9]*|NVJPG[0-9]*|VIC[0-9]*|MSENC|OFA|NVDLA[0-9]*|PVA[0-9]*|SE)"
    rf"(?:_FREQ)?) (?P<value>(?:(?:(?P<util>{_NUM})%)?@)?(?P<freq>[0-9]+)|off)" + _END
)
#: the shapes of a field the parser does not model (`NAME value`): a name, then `off`, a number with a unit,
#: `a/b[/c]`, `N%@MHz`, `@MHz`, `@[MHz,...]` or a `[..]` list; text of no such shape is junk, not a field
_FIELD_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_AMOUNT = rf"{_NUM}(?:[kMG]?B|m?W|C|%)?"
_FIELD_VALUE_RE = re.compile(
    rf"off|{_AMOUNT}(?:/{_AMOUNT})*|(?:{_NUM}%)?@(?:[0-9]+|\[[0-9]+(?:,[0-9]+)*\])"
    rf"|\[{_CPU_ITEM}(?:,{_CPU_ITEM})*\](?:@[0-9]+)?"
)


@dataclass(frozen=True)
class CpuCore:
    """One CPU core; an `off` core (hot-unplugged by the power mode) has no load or clock."""

    index: int
    online: bool
    load_pct: float | None
    freq_mhz: float | None


@dataclass(frozen=True)
class Rail:
    """One INA3221 power channel in mW: current, running average, and (JetPack 7) maximum."""

    name: str
    cur_mw: float
    avg_mw: float | None
    max_mw: float | None


@dataclass(frozen=True)
class TegrastatsSample:
    """Everything one tegrastats line says; fields the board did not print are None or empty."""

    raw: str
    timestamp: datetime | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    iram_used_mb: float | None = None
    iram_total_mb: float | None = None
    cpus: tuple[CpuCore, ...] = ()
    gpu_util_pct: float | None = None
    gpu_freq_mhz: float | None = None
    emc_util_pct: float | None = None
    emc_freq_mhz: float | None = None
    temps_c: dict[str, float] = field(default_factory=dict)
    rails: tuple[Rail, ...] = ()
    #: engine clock in MHz by name as printed (APE, NVENC, VIC_FREQ, the DLA cores' NVDLA0_FREQ on JetPack 5
    #: and NVDLA0 on JetPack 6 ...); None when the engine is off
    engines: dict[str, float | None] = field(default_factory=dict)
    #: engine load in % where the board prints one (JetPack 6 `NVENC 79%@166`; MTS fg/bg)
    engine_load_pct: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    #: the tokens in `extra` that are no tegrastats field at all (markup, a mangled token, a stray word): the
    #: line was damaged on its way, unlike a well-formed field the parser does not model
    junk: tuple[str, ...] = ()
    #: why this line is not (wholly) a measurement: no tegrastats field in it, or impossible values dropped
    problems: tuple[str, ...] = ()
    #: rails whose reading was impossible and dropped: a sum of the rest would be no total
    dropped_rails: tuple[str, ...] = ()

    @property
    def parsed(self) -> bool:
        """Whether the line had any tegrastats field at all (junk, an error message, `ls` output do not)."""
        return bool(self.cpus or self.rails or self.temps_c or self.ram_total_mb is not None
                    or self.gpu_util_pct is not None or self.emc_util_pct is not None)

    @property
    def cpu_online(self) -> int:
        return sum(1 for core in self.cpus if core.online)

    @property
    def connected_rails(self) -> tuple[Rail, ...]:
        """The rails that measure something (the `NC` channels do not)."""
        return tuple(rail for rail in self.rails if rail.name != NOT_CONNECTED)

    @property
    def rails_mw(self) -> dict[str, float]:
        """Current power per connected rail."""
        return {rail.name: rail.cur_mw for rail in self.connected_rails}

    def total_power_mw(self, rule: str = "auto") -> float | None:
        """Board power by `rule`: a rail name, "sum" of all rails, or "auto" (input rail, else sum). For a
        capture, resolve "auto" once with `capture_rule` so that every sample is totalled the same way."""
        rails = self.rails_mw
        if rule == "auto":
            rule = next((name for name in INPUT_RAILS if name in rails), "sum")
        if rule == "sum":
            return sum(rails.values()) if rails and not self.dropped_rails else None
        return rails.get(rule)


def capture_rule(samples: Iterable[TegrastatsSample], rule: str = "auto") -> str:
    """The one total-power rule for a whole capture: "auto" becomes the input rail any sample has (else "sum"),
    so that a sample whose input rail is corrupt gets no total instead of a sum of the others; a named rail that
    no sample has is a ParseError naming the rails there are."""
    seen = {name for sample in samples for name in sample.rails_mw}
    if rule == "auto":
        return next((name for name in INPUT_RAILS if name in seen), "sum")
    if rule != "sum" and rule not in seen:
        raise ParseError(f"rail {rule!r} is in none of the samples; rails there: {', '.join(sorted(seen)) or 'none'}")
    return rule


@dataclass
class _Fields:
    """Mutable collector for one line; frozen into a TegrastatsSample at the end."""

    values: dict[str, Any] = field(default_factory=dict)
    cpus: list[CpuCore] = field(default_factory=list)
    temps_c: dict[str, float] = field(default_factory=dict)
    rails: list[Rail] = field(default_factory=list)
    engines: dict[str, float | None] = field(default_factory=dict)
    engine_load_pct: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    junk: list[str] = field(default_factory=list)

    def keep(self, key: str, text: str) -> None:
        """Store text in `extra` without overwriting an earlier entry of the same key."""
        unique, n = key, 2
        while unique in self.extra:
            unique, n = f"{key}#{n}", n + 1
        self.extra[unique] = text

    def keep_unknown(self, at: int, tokens: list[str]) -> None:
        """Keep a run of text no pattern matched, and note the tokens in it that are not `NAME value` fields."""
        self.keep(f"token{at}", " ".join(tokens))
        self.junk += _not_fields(tokens)


def _to_mb(value: str, unit: str) -> float:
    return float(value) * _MB_PER_UNIT[unit]


def _to_mw(value: str, unit: str | None) -> float:
    """JetPack 4 prints rails without a unit (mW); accept `W` too in case a tool prints watts."""
    return float(value) * (1000.0 if unit == "W" else 1.0)


def _on_memory(m: re.Match[str], acc: _Fields) -> None:
    prefix = m["name"].lower()
    acc.values[f"{prefix}_used_mb"] = _to_mb(m["used"], m["unit"])
    acc.values[f"{prefix}_total_mb"] = _to_mb(m["total"], m["unit"])


def _on_cpu(m: re.Match[str], acc: _Fields) -> None:
    """Both `[N%@MHz,...]` and the older `[N%,...]@MHz`; `off` marks an unplugged core."""
    shared_freq = m["freq"]
    acc.cpus.clear()
    for index, item in enumerate(m["items"].split(",")):
        core = _CPU_ITEM_RE.fullmatch(item)
        if core is None:  # the item pattern admits only a load or `off`
            acc.cpus.append(CpuCore(index, False, None, None))
            continue
        freq = core["freq"] or shared_freq
        acc.cpus.append(CpuCore(index, True, float(core["load"]), float(freq) if freq else None))


def _on_mts(m: re.Match[str], acc: _Fields) -> None:
    acc.engine_load_pct["MTS_FG"] = float(m["fg"])
    acc.engine_load_pct["MTS_BG"] = float(m["bg"])


def _on_load(m: re.Match[str], acc: _Fields) -> None:
    """GR3D_FREQ and EMC_FREQ become GPU/EMC fields (a per-GPC array reports its fastest clock);
    other loads such as Orin's GR3D2_FREQ are kept in `extra` under their name."""
    prefix = {"GR3D_FREQ": "gpu", "EMC_FREQ": "emc"}.get(m["name"])
    if prefix is None:
        acc.keep(m["name"], m["value"])
        return
    freqs = [float(f) for f in m["freqs"].split(",")] if m["freqs"] else []
    if m["freq"]:
        freqs.append(float(m["freq"]))
    acc.values[f"{prefix}_util_pct"] = float(m["util"]) if m["util"] else None
    acc.values[f"{prefix}_freq_mhz"] = max(freqs) if freqs else None


def _on_temp(m: re.Match[str], acc: _Fields) -> None:
    """JetPack 7 prints `cur/max`: the first value is the reading. -256C is a sensor that is off."""
    value = float(m["cur"])
    if value != OFFLINE_TEMP_C:
        acc.temps_c[m["name"]] = value


def _on_rail(m: re.Match[str], acc: _Fields) -> None:
    peak = _to_mw(m[6], m[7]) if m[6] else None
    acc.rails.append(Rail(m["name"], _to_mw(m[2], m[3]), _to_mw(m[4], m[5]), peak))


def _on_engine(m: re.Match[str], acc: _Fields) -> None:
    """`APE 174`, `NVENC off`, JetPack 6's `NVENC 79%@166` (load at clock) and JetPack 5's `NVDLA0_FREQ @1600`
    (a clock without a load)."""
    acc.engines[m["name"]] = None if m["value"] == "off" else float(m["freq"])
    if m["util"]:
        acc.engine_load_pct[m["name"]] = float(m["util"])


_Handler = Callable[[re.Match[str], _Fields], None]
_FIELDS: tuple[tuple[re.Pattern[str], _Handler], ...] = (
    (_MEMORY_RE, _on_memory),
    (_CPU_RE, _on_cpu),
    (_MTS_RE, _on_mts),
    (_ENGINE_RE, _on_engine),  # before the _FREQ loads: `VIC_FREQ 0%@115` is an engine, not the GPU
    (_LOAD_RE, _on_load),
    (_TEMP_RE, _on_temp),
    (_RAIL_RE, _on_rail),
)


def _parse_timestamp(text: str, acc: _Fields) -> int:
    """Read the optional `MM-DD-YYYY HH:MM:SS` prefix; return where the fields start."""
    m = _TIMESTAMP_RE.match(text)
    if m is None:
        return 0
    try:
        acc.values["timestamp"] = datetime.strptime(m[1], "%m-%d-%Y %H:%M:%S")
    except ValueError:
        acc.keep("timestamp", m[1])
    return m.end()


def _match_field(text: str, pos: int, acc: _Fields) -> int | None:
    """Apply the first field pattern that matches at `pos`; return where it ends."""
    for pattern, handler in _FIELDS:
        m = pattern.match(text, pos)
        if m is not None:
            handler(m, acc)
            return m.end()
    return None


def _token_end(text: str, pos: int) -> int:
    end = text.find(" ", pos)
    return len(text) if end < 0 else end


def _not_fields(tokens: list[str]) -> list[str]:
    """The tokens of an unmatched run that are not part of a `NAME value` pair. Newer boards print fields this
    parser does not model (`GR3D2_FREQ 99%@0`, `EMC 1%@408`), and those are legitimate; `**GR3D_FREQ**`,
    `<b>`, `45x6mW/4556mW` or a word without a value are not."""
    junk = []
    i = 0
    while i < len(tokens):
        if (_FIELD_NAME_RE.fullmatch(tokens[i]) and i + 1 < len(tokens)
                and _FIELD_VALUE_RE.fullmatch(tokens[i + 1])):
            i += 2
        else:
            junk.append(tokens[i])
            i += 1
    return junk


def parse_line(line: str) -> TegrastatsSample:
    """Parse one tegrastats line. Never raises: unknown text is kept in `extra`, keyed by token index."""
    text = " ".join(line.split())
    acc = _Fields()
    pos = _parse_timestamp(text, acc)
    unknown: list[str] = []
    unknown_at = 0
    while pos < len(text):
        if text[pos] == " ":
            pos += 1
            continue
        end = _match_field(text, pos, acc)
        if end is None:
            if not unknown:
                unknown_at = text.count(" ", 0, pos)
            end = _token_end(text, pos)
            unknown.append(text[pos:end])
        elif unknown:
            acc.keep_unknown(unknown_at, unknown)
            unknown.clear()
        pos = end
    if unknown:
        acc.keep_unknown(unknown_at, unknown)
    sample = TegrastatsSample(
        raw=line.rstrip("\r\n"),
        cpus=tuple(acc.cpus),
        temps_c=acc.temps_c,
        rails=tuple(acc.rails),
        engines=acc.engines,
        engine_load_pct=acc.engine_load_pct,
        extra=acc.extra,
        junk=tuple(acc.junk),
        **acc.values,
    )
    if not sample.parsed:
        return replace(sample, problems=(f"no tegrastats field in {text[:60]!r}",))
    return without_impossible(sample)


def without_impossible(sample: TegrastatsSample) -> TegrastatsSample:
    """Drop readings no board can produce (a corrupt line), each named in `problems`."""
    problems = []
    rails = []
    dropped = []
    for rail in sample.rails:
        values = [v for v in (rail.cur_mw, rail.avg_mw, rail.max_mw) if v is not None]
        if all(0.0 <= v <= MAX_RAIL_MW for v in values):
            rails.append(rail)
        else:
            dropped.append(rail.name)
            problems.append(f"rail {rail.name} {max(values, key=abs):g} mW is impossible (0..{MAX_RAIL_MW:g})")
    temps = {}
    for name, value in sample.temps_c.items():
        if TEMP_RANGE_C[0] <= value <= TEMP_RANGE_C[1]:
            temps[name] = value
        else:
            problems.append(f"temperature {name} {value:g} C is impossible ({TEMP_RANGE_C[0]:g}..{TEMP_RANGE_C[1]:g})")
    loads: dict[str, float | None] = {}
    for key in ("gpu_util_pct", "emc_util_pct"):
        value = getattr(sample, key)
        if value is not None and value > MAX_LOAD_PCT:
            loads[key] = None
            problems.append(f"{key.split('_')[0].upper()} load {value:g}% is impossible")
    cpus = tuple(replace(core, load_pct=None) if core.load_pct is not None and core.load_pct > MAX_LOAD_PCT else core
                 for core in sample.cpus)
    problems += [f"cpu{core.index} load {core.load_pct:g}% is impossible" for core in sample.cpus
                 if core.load_pct is not None and core.load_pct > MAX_LOAD_PCT]
    if not problems:
        return sample
    return replace(sample, rails=tuple(rails), temps_c=temps, cpus=cpus, problems=tuple(problems),
                   dropped_rails=tuple(dropped), **loads)


def parse_lines(lines: Iterable[str]) -> Iterator[TegrastatsSample]:
    """One sample per non-blank line, as `tegrastats --logfile` writes them."""
    for line in lines:
        if line.strip():
            yield parse_line(line)


def parse_file(path: str | Path) -> list[TegrastatsSample]:
    """Parse a whole capture; raises OSError when the file cannot be read."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return list(parse_lines(text.splitlines()))


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def to_row(sample: TegrastatsSample, rule: str = "auto", *, index: int | None = None) -> dict[str, Any]:
    """One flat row (scalars only) for CSV or a dataframe; per-core, sensor and rail columns vary by board."""
    row: dict[str, Any] = {
        "time": sample.timestamp.isoformat() if sample.timestamp else None,
        "index": index,
        "cpu_online": sample.cpu_online,
    }
    for core in sample.cpus:
        row[f"cpu{core.index}_load_pct"] = core.load_pct
        row[f"cpu{core.index}_freq_mhz"] = core.freq_mhz
    row["cpu_load_mean_pct"] = _mean(core.load_pct for core in sample.cpus if core.online)
    row.update({key: getattr(sample, key) for key in _ROW_SCALARS})
    row.update({f"temp_{name}_c": value for name, value in sample.temps_c.items()})
    for rail in sample.connected_rails:  # current, the board's running average, and JetPack 7's maximum
        row[f"rail_{rail.name}_mw"] = rail.cur_mw
        row[f"rail_{rail.name}_avg_mw"] = rail.avg_mw
        if rail.max_mw is not None:
            row[f"rail_{rail.name}_max_mw"] = rail.max_mw
    for name, freq in sample.engines.items():
        row[f"engine_{name}_mhz"] = freq
    row.update({f"engine_{name}_load_pct": value for name, value in sample.engine_load_pct.items()})
    row["total_power_mw"] = sample.total_power_mw(rule)
    return row


def to_record(sample: TegrastatsSample, rule: str = "auto") -> dict[str, Any]:
    """One JSON-ready object per sample, keeping nested groups (temps, rails, unknown fields) intact."""
    return {
        "time": sample.timestamp.isoformat() if sample.timestamp else None,
        "total_power_mw": sample.total_power_mw(rule),
        "gpu_util_pct": sample.gpu_util_pct,
        "gpu_freq_mhz": sample.gpu_freq_mhz,
        "emc_util_pct": sample.emc_util_pct,
        "emc_freq_mhz": sample.emc_freq_mhz,
        "cpu_online": sample.cpu_online,
        "cpu_load_pct": [core.load_pct for core in sample.cpus],
        "cpu_freq_mhz": [core.freq_mhz for core in sample.cpus],
        "ram_used_mb": sample.ram_used_mb,
        "ram_total_mb": sample.ram_total_mb,
        "swap_used_mb": sample.swap_used_mb,
        "swap_total_mb": sample.swap_total_mb,
        "temps_c": dict(sample.temps_c),
        "rails_mw": sample.rails_mw,
        "rails_avg_mw": {rail.name: rail.avg_mw for rail in sample.connected_rails},
        "rails_max_mw": {rail.name: rail.max_mw for rail in sample.connected_rails if rail.max_mw is not None},
        "engines": dict(sample.engines),
        "engine_load_pct": dict(sample.engine_load_pct),
        "extra": dict(sample.extra),
        "junk": list(sample.junk),
    }

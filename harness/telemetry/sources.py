"""The telemetry sources a measurement can sample the board with, by the name `--telemetry` takes."""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import HarnessError
from harness.telemetry.jtop import JtopSampler
from harness.telemetry.window import Sampler, TegrastatsSampler

SAMPLERS: dict[str, Callable[[], Sampler]] = {"tegrastats": TegrastatsSampler, "jtop": JtopSampler}
DEFAULT_SOURCE = "tegrastats"
#: jtop's service is Python and runs nvpmodel, swapon and others at every sample: at 100 ms it takes about 40 % of
#: a core on a virtual board (measured; 9 % at 500 ms), work the measurement would then share the board with
DEFAULT_INTERVAL_MS = {"tegrastats": 100, "jtop": 500}


def sampler_for(name: str) -> Sampler:
    try:
        return SAMPLERS[name]()
    except KeyError:
        raise HarnessError(f"unknown telemetry source {name!r}; choose one of {', '.join(SAMPLERS)}") from None

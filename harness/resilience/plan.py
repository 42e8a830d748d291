"""The outage cases, with durations scaled by one factor (--outage-scale: seconds per Microsoft minute).

Microsoft's IoT Edge connectivity matrix (offline minutes / online minutes / cycles) comes from its pipeline
`builds/e2e/templates/connectivity-deploy.yaml` (see shared/research/azure_iot.md): 5/5/5, 10/10/3, 15/15/3,
30/30/2. At scale 60 a case runs those minutes; at the default 1, seconds (CI).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.faults import LinkShape

#: (offline, online, cycles) in Microsoft's minutes
MATRIX = ((5, 5, 5), (10, 10, 3), (15, 15, 3), (30, 30, 2))
#: a flapping link is about connection churn, not duration: 1 s off, 1 s on, 20 times, at any scale
FLAP_S, FLAP_CYCLES = 1.0, 20
#: the degraded link: a slow, jittery, narrow path (about 3x the module's 15 FPS of messages)
DEGRADED = LinkShape(delay_ms=150.0, jitter_ms=50.0, rate_kbit=256.0)
#: the outbox bound for the overflow case, and how many times its worth of frames the outage lasts
OVERFLOW_OUTBOX, OVERFLOW_FACTOR = 100, 2.5
#: online time before the first outage of every case (its FPS is part of the online figure)
LEAD_S = 3.0


@dataclass(frozen=True)
class Cycles:
    """`cycles` times: the link down for `offline_s`, then up for `online_s` (after `lead_s` up first)."""

    offline_s: float
    online_s: float
    cycles: int
    lead_s: float

    @property
    def seconds(self) -> float:
        return self.lead_s + self.cycles * (self.offline_s + self.online_s)


def matrix(scale: float) -> list[tuple[str, Cycles]]:
    """Microsoft's matrix at `scale` seconds per minute, after a short lead-in online."""
    return [(f"{off}m-off-{on}m-on-x{n}", Cycles(off * scale, on * scale, n, lead_s=LEAD_S))
            for off, on, n in MATRIX]


def flapping() -> Cycles:
    return Cycles(FLAP_S, FLAP_S, FLAP_CYCLES, lead_s=LEAD_S)


def single_outage(scale: float) -> Cycles:
    """One outage of Microsoft's shortest (5 minutes at scale 60), for the kill, reboot and degraded cases."""
    return Cycles(max(4.0, 5 * scale), max(4.0, 5 * scale), 1, lead_s=LEAD_S)

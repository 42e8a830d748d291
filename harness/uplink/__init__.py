"""The uplink under test: a broker (the lab's, or mosquitto started on this host), the harness's subscriber
(the actual stream), and the verdict against what the module says it produced (the expected stream)."""

from harness.uplink.broker import HostBroker
from harness.uplink.collector import Collector, Received
from harness.uplink.verdict import Produced, Verdict, judge

__all__ = ["Collector", "HostBroker", "Produced", "Received", "Verdict", "judge"]

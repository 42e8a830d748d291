"""Verdicts on throughput figures: the lab's floors from the device profile and the baseline regression gate."""

from harness.gates.baseline import BaselineGate, Comparison, GatePolicy, compare, load_policy, resolve_baseline
from harness.gates.floors import FloorCheck, check_floors

__all__ = [
    "BaselineGate",
    "Comparison",
    "FloorCheck",
    "GatePolicy",
    "check_floors",
    "compare",
    "load_policy",
    "resolve_baseline",
]

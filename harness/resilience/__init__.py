"""The offline-resilience cases: their schedule (plan) and the driver that runs one on a board (run)."""

from harness.resilience.plan import Cycles, flapping, matrix, single_outage
from harness.resilience.run import OutageRun, Outcome

__all__ = ["Cycles", "OutageRun", "Outcome", "flapping", "matrix", "single_outage"]

"""Reports from run folders: per device, across devices, and the regression gate against a baseline."""

from harness.report.build import Report, build
from harness.report.render import write
from harness.report.runs import RunData, load_run

__all__ = ["Report", "RunData", "build", "load_run", "write"]

"""Results: one tidy row per observation, appended to disk the moment it is measured.

`table` holds the row schema, the crash-safe writer and the reader; `modeled` decides whether a
metric was measured or modeled on this board; `verdicts` keeps each test's verdict as a row beside its figures;
`benchmark` exports latencies as pytest-benchmark JSON.
"""

from harness.results.benchmark import BenchmarkFile, benchmark_entry, write_benchmark_json
from harness.results.modeled import (
    EMULATED_CPU,
    modeled_metrics,
    observations,
    read_differences,
    read_modeled,
    source_of,
)
from harness.results.table import FIELDS, ResultsWriteError, ResultsWriter, Row, RowContext, read_results
from harness.results.verdicts import VERDICT, passing_figures, verdict_row

__all__ = [
    "EMULATED_CPU",
    "FIELDS",
    "VERDICT",
    "BenchmarkFile",
    "ResultsWriteError",
    "ResultsWriter",
    "Row",
    "RowContext",
    "benchmark_entry",
    "modeled_metrics",
    "observations",
    "passing_figures",
    "read_differences",
    "read_modeled",
    "read_results",
    "source_of",
    "verdict_row",
    "write_benchmark_json",
]

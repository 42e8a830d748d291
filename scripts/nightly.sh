#!/usr/bin/env bash
# The nightly run's one command line, shared by both jobs of .github/workflows/nightly.yml and by its end-to-end test
# (tests/test_nightly_e2e.py): the suites on every board SELECTOR names in LAB, one pytest-xdist worker (one leased
# board) each, judged against the newest earlier passing figures of the same board and configuration
# (--baseline latest: the report folder's runs, else the results HISTORY). Exits with pytest's status.
#
#   LAB=lab.yaml SELECTOR=tag:nightly RUN_ID=nightly-42 [WORKERS=8] [HISTORY=postgresql://...] \
#     [REPORT_DIR=reports] [PYTHON=.venv/bin/python] scripts/nightly.sh [more pytest options]
#
# A board with no earlier run is a first run (its report says so; this run becomes its baseline); a history that
# cannot be read fails that board's throughput tests with the reason.
set -euo pipefail
: "${LAB:?LAB: the path of the lab.yaml of the boards}"
: "${SELECTOR:?SELECTOR: the boards to run on (--device: tag:X, a profile, a board name)}"
: "${RUN_ID:?RUN_ID: the name of this run (its folder in REPORT_DIR)}"
workers=${WORKERS:-auto}
report_dir=${REPORT_DIR:-reports}
history=()
if [ -n "${HISTORY:-}" ]; then
  history=(--history "$HISTORY")
fi
root=$(cd "$(dirname "$0")/.." && pwd)
exec "${PYTHON:-$root/.venv/bin/python}" -m pytest "$root/suites" --lab "$LAB" --device "$SELECTOR" -n "$workers" \
  --baseline latest --report-dir "$report_dir" --run-id "$RUN_ID" --junitxml "$report_dir/$RUN_ID/junit.xml" \
  "${history[@]}" -p no:cacheprovider "$@"

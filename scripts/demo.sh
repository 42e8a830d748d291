#!/usr/bin/env bash
# The main job on the virtual default: deploy the reference detection module to a virtual Jetson
# Xavier NX (a Docker container reached over SSH like a real board; its image is built on first
# use) and run the correctness, offline-resilience and throughput suites against it. Results go to
# reports/<run>/ (resilience timelines in reports/<run>/resilience/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run="demo-$(date +%Y%m%dT%H%M%S)"
status=0
.venv/bin/python -m pytest suites --device=virtual:xavier-nx --report-dir reports --run-id "$run" \
  --junitxml "reports/$run/junit.xml" -p no:cacheprovider "$@" || status=$?
echo "==> results: reports/$run/results.csv (one row per measurement), reports/$run/benchmark.json" \
     "(pytest-benchmark format), reports/$run/junit.xml, reports/$run/resilience/ (outage timelines)," \
     "reports/$run/report.html (and .md, .json); history: reports/history.sqlite"
exit "$status"

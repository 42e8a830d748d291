#!/usr/bin/env bash
# The main job on what this machine has. Until virtual boards land (next issue) this parses the
# bundled real tegrastats captures into a tidy table and writes it under reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p reports/demo
cat tests/data/jetson/tegrastats/agx-orin-jp5-root.txt tests/data/jetson/tegrastats/agx-orin-jp7.2-root.txt \
  > reports/demo/agx-orin-tegrastats.log
.venv/bin/hil devices --lab device_profiles/lab.example.yaml --no-check
.venv/bin/hil telemetry parse reports/demo/agx-orin-tegrastats.log --format csv --output reports/demo/agx-orin-telemetry.csv
.venv/bin/hil telemetry parse reports/demo/agx-orin-tegrastats.log --format json --output reports/demo/agx-orin-telemetry.jsonl
echo "==> report written: reports/demo/agx-orin-telemetry.csv and .jsonl"

#!/usr/bin/env bash
# The harness's own tests: lint, then pytest (real sshd, real tool captures). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
echo "==> pytest"
exec .venv/bin/python -m pytest tests "$@"

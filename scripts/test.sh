#!/usr/bin/env bash
# The harness's own tests: lint, then pytest (real sshd, real tool captures). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
echo "==> vermin (module/ and the board-side scripts on Python 3.6)"
.venv/bin/vermin --config-file vermin.ini module harness/board/onboard
echo "==> pytest"
exec .venv/bin/python -m pytest tests "$@"

#!/usr/bin/env bash
# The main job on the virtual default: bring up a virtual Jetson Xavier NX (a Docker container
# reached over SSH like a real board; its image is built on first use), probe it, record a
# telemetry capture from its tegrastats and write the report under reports/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=reports/demo
mkdir -p "$out"
.venv/bin/hil virtual up xavier-nx
.venv/bin/hil probe --device virtual:xavier-nx | tee "$out/probe-virtual-xavier-nx.txt"
key=$HOME/.cache/jetson-hil/virtual/virtual-xavier-nx
port=$(.venv/bin/python -c "from harness.virtual.boards import find; print(find('virtual-xavier-nx').port)")
ssh -i "$key/id_ed25519" -o UserKnownHostsFile="$key/known_hosts" -o BatchMode=yes -p "$port" root@127.0.0.1 \
  'timeout 3 tegrastats --interval 100' > "$out/tegrastats-virtual-xavier-nx.log" || true
.venv/bin/hil telemetry parse "$out/tegrastats-virtual-xavier-nx.log" --format csv \
  --total-power VDD_IN --output "$out/telemetry-virtual-xavier-nx.csv"
echo "==> report written: $out/probe-virtual-xavier-nx.txt, $out/telemetry-virtual-xavier-nx.csv"
echo "    (the board keeps running; stop it with: .venv/bin/hil virtual down virtual-xavier-nx)"

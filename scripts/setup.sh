#!/usr/bin/env bash
# Install everything jetson-hil needs on a fresh Debian 12 machine (idempotent):
# Debian packages (OpenSSH for the SSH tests, the Docker engine and debootstrap for virtual
# boards, mosquitto for the uplink, docker-registry for the IoT Edge image push, Chromium for the report's
# browser test, the PostgreSQL server for the history tests), a running Docker engine, and a virtualenv in
# .venv with the harness and its test tools.
# Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openssh-server openssh-client python3-venv ca-certificates openssl docker.io debootstrap iptables iproute2 mosquitto
              docker-registry
              chromium postgresql)
# aarch64 virtual boards (hil virtual up PROFILE --arch arm64) run under qemu-user on another machine
[ "$(uname -m)" = aarch64 ] || APT_PACKAGES+=(qemu-user-static binfmt-support)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# The Docker engine: systemd starts it where systemd runs; otherwise start dockerd ourselves.
if ! as_root docker info >/dev/null 2>&1; then
  echo "==> starting the Docker engine"
  if [ -d /run/systemd/system ]; then
    as_root systemctl start docker
  else
    as_root sh -c 'nohup setsid dockerd >/var/log/jetson-hil-dockerd.log 2>&1 </dev/null &'
  fi
  for _ in $(seq 1 60); do as_root docker info >/dev/null 2>&1 && break; sleep 1; done
  as_root docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/jetson-hil-dockerd.log" >&2; exit 1; }
fi

# qemu-user for aarch64 binaries, registered with binfmt_misc with the F flag (containers find the interpreter):
# the registration is the kernel's, for the whole machine, so say so when it is made.
BINFMT=/proc/sys/fs/binfmt_misc
if [ "$(uname -m)" != aarch64 ] && ! grep -qs '^enabled' "$BINFMT/qemu-aarch64"; then
  echo "==> registering qemu-user for aarch64 binaries with binfmt_misc (for the whole machine: every aarch64"
  echo "    program on it now runs under qemu; undo with: update-binfmts --disable qemu-aarch64)"
  [ -e "$BINFMT/register" ] || as_root mount -t binfmt_misc binfmt_misc "$BINFMT"
  as_root update-binfmts --enable qemu-aarch64
  grep -qs '^enabled' "$BINFMT/qemu-aarch64" || { echo "qemu-aarch64 is not registered; see $BINFMT" >&2; exit 1; }
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import harness" 2>/dev/null || [ pyproject.toml -nt .venv/.installed ]; then
  echo "==> installing jetson-hil and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch .venv/.installed
fi

# azure-iot-device (the IoT Edge sink's SDK) pins paho-mqtt<2, the MQTT sink needs 2.x: the SDK gets a folder
# of its own that only the module processes of the IoT Edge tests put on their PYTHONPATH.
if [ ! -d .venv/iotedge-sdk/azure/iot/device ]; then
  echo "==> installing azure-iot-device into .venv/iotedge-sdk"
  .venv/bin/python -m pip install -q --target .venv/iotedge-sdk 'azure-iot-device>=2.12,<3'
fi

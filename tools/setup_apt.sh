#!/usr/bin/env bash
# Install the Debian packages the project needs on the controller (tools/apt-packages.txt).
# Idempotent: does nothing when every package is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t want < <(grep -vE '^\s*(#|$)' tools/apt-packages.txt | awk '{print $1}' | sort -u)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "apt: all ${#want[@]} packages present"
  exit 0
fi
echo "apt: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# nginx is here for `nginx -t` on rendered configs only: the controller serves nothing
if printf '%s\n' "${missing[@]}" | grep -qx 'nginx-light' && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi

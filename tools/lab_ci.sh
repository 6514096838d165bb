#!/usr/bin/env bash
# `make test-lab-full`: the main job as CI proves it — `make lab` from scratch on every host of
# both inventories, a second converge that must change nothing, `lab-status` listing every host
# running, then the lab is powered off again (disks purged) so the machine is left as it was.
set -uo pipefail
cd "$(dirname "$0")/.."
labctl=(.venv/bin/python lab/labctl)
log1=$(mktemp) log2=$(mktemp)
FAILED_HOSTS=()
cleanup() { "${labctl[@]}" down --purge >/dev/null 2>&1 || true; rm -f "$log1" "$log2"; }
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for h in "${FAILED_HOSTS[@]}"; do
    echo "---- journal of $h" >&2
    "${labctl[@]}" logs "$h" -n 80 >&2 || true
  done
  exit 1
}

echo "== make lab (first converge)"
bash tools/lab_run.sh 2>&1 | tee "$log1" | grep -E '^(PLAY|TASK|== |fatal|failed|ERROR)|: ok=|unreachable=[1-9]|site.yml exit' || true
rc=${PIPESTATUS[0]}
mapfile -t FAILED_HOSTS < <(grep -E 'failed=[1-9]|unreachable=[1-9]' "$log1" | awk '{print $1}')
[ "$rc" -eq 0 ] || fail "first converge exited $rc (hosts: ${FAILED_HOSTS[*]:-none})"

echo "== make lab (second converge: must change nothing)"
bash tools/lab_run.sh 2>&1 | tee "$log2" | grep -E ': ok=|site.yml exit' || true
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || fail "second converge exited $rc"
changed=$(grep -E '^[a-z0-9-]+ +: ok=' "$log2" | grep -vE 'changed=0 ' || true)
mapfile -t FAILED_HOSTS < <(printf '%s\n' "$changed" | awk 'NF {print $1}')
[ -z "$changed" ] || fail "second converge is not idempotent:"$'\n'"$changed"

want=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "tools"); from unde_tools.inventory import load; print(len(load(["inventories/lab"]).hostvars))')
running=$("${labctl[@]}" status --json | .venv/bin/python -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["state"] == "running" and r["ssh"]))')
[ "$running" -eq "$want" ] || fail "lab-status shows $running of $want hosts running with ssh"
echo "lab: $running/$want hosts running, site.yml converged and idempotent"

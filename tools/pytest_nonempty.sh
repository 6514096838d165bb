#!/usr/bin/env bash
# Run pytest and refuse the "no tests collected" outcome (exit 5) instead of passing silently.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "ERROR: pytest collected no tests for: $*" >&2
  exit 1
fi
exit "$rc"

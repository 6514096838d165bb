#!/usr/bin/env bash
# Verify every collection in requirements.yml is installed (bundled by the PyPI `ansible`
# package) at a version satisfying the requirement. Galaxy is not reachable here.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
import json, subprocess, sys
import yaml
from ansible.utils.version import SemanticVersion
req = yaml.safe_load(open("requirements.yml"))["collections"]
out = subprocess.run([".venv/bin/ansible-galaxy", "collection", "list", "--format", "json"],
                     capture_output=True, text=True, check=True).stdout
installed = {}
for _path, cols in json.loads(out).items():
    for name, meta in cols.items():
        installed.setdefault(name, meta["version"])
bad = []
for c in req:
    name, spec = c["name"], str(c.get("version", "*"))
    have = installed.get(name)
    if have is None:
        bad.append(f"{name}: not installed (needed {spec})")
        continue
    if spec.startswith(">="):
        if SemanticVersion(have) < SemanticVersion(spec[2:]):
            bad.append(f"{name}: {have} installed, needed {spec}")
    print(f"collection {name} {have} ({spec}) ok")
if bad:
    print("\n".join("ERROR " + b for b in bad), file=sys.stderr)
    sys.exit(1)
PY

#!/usr/bin/env bash
# `make lab`: boot every lab host, then run site.yml against inventories/lab.
# Prints progress per host (Ansible's per-host lines) and a final summary; safe to repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
echo "== lab: booting every host of inventories/lab"
.venv/bin/python lab/labctl up
# The embedder and embed-batch roles copy the ONNX image encoder from the controller; the lab cannot
# download FashionCLIP's weights, so it gets a small model with the same signature (roles/embedder/README.md).
.venv/bin/python -m unde_testkit.testmodel --lab
echo "== lab: site.yml against inventories/lab"
set +e
.venv/bin/ansible-playbook -i inventories/lab --vault-id "lab@inventories/lab/vault-password.txt" site.yml "$@"
rc=$?
set -e
echo "== lab: summary"
.venv/bin/python lab/labctl status
echo "site.yml exit code: $rc; total $(( $(date +%s) - start ))s"
exit "$rc"

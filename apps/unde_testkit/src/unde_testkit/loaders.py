"""Load a Python file that is not part of any installed package as a module: Ansible modules and
filter plugins (``roles/*/library``, ``roles/*/filter_plugins``), the backup runner the pgbackrest
role installs, bench scripts. They are deployed as single files, so tests import them by path;
this is the one place that does it.

``sql_runner()`` is the migration runner the postgresql role runs (``unde_sql_migrate``), found in
the repository checkout (:func:`repo_root`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["SQL_RUNNER", "load_module", "repo_root", "sql_runner"]

#: the migration runner, relative to the repository root
SQL_RUNNER = Path("roles/postgresql/library/unde_sql_migrate.py")


def load_module(name: str, path: Path) -> ModuleType:
    """Execute the file ``path`` as module ``name`` and register it in :data:`sys.modules` (dataclasses
    and pickling look a module up there while it runs). Loading the same file under the same name
    again returns the module already loaded, so every caller shares one module object; a different
    file under a name already taken is an error rather than a silent swap.
    """
    path = path.resolve()
    loaded = sys.modules.get(name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) == str(path):
            return loaded
        raise ImportError(f"module {name!r} is already loaded from {loaded.__file__}, not {path}")
    if not path.is_file():
        raise FileNotFoundError(f"no module file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def repo_root() -> Path:
    """The repository checkout (the directory holding files/sql and the migration runner): above
    this module in the uv workspace, else above the working directory."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / SQL_RUNNER).is_file() and (candidate / "files/sql").is_dir():
                return candidate
    raise RuntimeError(f"no checkout with {SQL_RUNNER} and files/sql above {__file__} or {Path.cwd()}")


def sql_runner() -> ModuleType:
    """The postgresql role's migration runner (``migrate``, ``subprocess_runner``, ``Connection``…)."""
    return load_module("unde_sql_migrate", repo_root() / SQL_RUNNER)

"""unde_testkit.loaders: one module object per file, clear errors, and the SQL runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from unde_testkit.loaders import SQL_RUNNER, load_module, repo_root, sql_runner

NAME = "unde_testkit_loader_probe"


@pytest.fixture(autouse=True)
def forget_probe() -> Iterator[None]:
    yield
    sys.modules.pop(NAME, None)


def test_loads_a_file_once_and_registers_it(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("import dataclasses, sys\n@dataclasses.dataclass\nclass Row:\n    x: int\nLOADS = [1]\n")
    module = load_module(NAME, path)
    assert sys.modules[NAME] is module and module.Row(3).x == 3  # dataclasses need sys.modules
    module.LOADS.append(2)
    assert load_module(NAME, tmp_path / "." / "probe.py") is module
    assert module.LOADS == [1, 2]


def test_a_name_taken_by_another_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "b.py").write_text("B = 1\n")
    load_module(NAME, tmp_path / "a.py")
    with pytest.raises(ImportError, match=r"already loaded from .*a\.py"):
        load_module(NAME, tmp_path / "b.py")


def test_missing_file_and_failing_module(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.py"):
        load_module(NAME, tmp_path / "nothere.py")
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(RuntimeError, match="boom"):
        load_module(NAME, tmp_path / "boom.py")
    assert NAME not in sys.modules  # a half-run module is not left behind


def test_sql_runner_is_the_postgresql_roles_module() -> None:
    runner = sql_runner()
    assert runner.__file__ == str((repo_root() / SQL_RUNNER).resolve())
    assert callable(runner.migrate) and callable(runner.subprocess_runner)
    assert sql_runner() is runner is sys.modules["unde_sql_migrate"]

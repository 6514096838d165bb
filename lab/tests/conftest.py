"""Attach the lab hosts' console log and journal to the report of a failed lab test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Generator
from pathlib import Path

import pytest

LABCTL = Path(__file__).resolve().parents[1] / "labctl"


def lab_logs(hosts: tuple[str, ...], lines: int = 40) -> str:
    out = []
    for host in hosts:
        try:
            cp = subprocess.run(
                [sys.executable, str(LABCTL), "logs", host, "-n", str(lines)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            out.append(f"===== {host} =====\n{cp.stdout}{cp.stderr}")
        except subprocess.TimeoutExpired:
            out.append(f"===== {host} =====\n(labctl logs timed out)")
    return "\n".join(out)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    hosts: tuple[str, ...] = getattr(getattr(item, "module", None), "LAB_HOSTS", ())
    if rep.failed and hosts and item.get_closest_marker("lab") is not None:
        rep.sections.append(("lab console logs and journals", lab_logs(hosts)))
    return rep

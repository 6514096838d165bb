"""The UNDE units on this scenario's hosts (the services the roles install or harden): each still
starts under its sandbox, and ``systemd-analyze security`` rates it at most 2.0, "OK"
(tools/unde_tools/unit_security.py; the same bound as tests/test_hardening.py offline). The table
of each host is printed: ``pytest -rP`` (or ``-s``) shows it for a passing run."""

from __future__ import annotations

import pytest
from testinfra.host import Host  # type: ignore[import-untyped]
from unde_tools import unit_security

pytestmark = pytest.mark.lab


def test_unde_units_run_hardened(node: Host, name: str) -> None:
    table, problems = unit_security.host_report(node, name)
    print(table)
    assert not problems, "\n".join(problems)

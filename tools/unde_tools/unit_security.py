"""The systemd units the roles install or harden, and their ``systemd-analyze security`` exposure.

One bound for both checks: tests/test_hardening.py measures the rendered units offline
(``systemd-analyze security --offline=yes``), the molecule scenarios' ``test_unit_hardening.py``
measure the units loaded on each lab host. ``systemd-analyze security`` rates a unit from 0 (best)
to 10; up to 2.0 it calls the unit "OK".

On a host, a unit is UNDE's when the roles wrote it (``/etc/systemd/system/<unit>`` starting with
the ``# Ansible managed`` header: every app unit, ``# unde_app: <app>`` on its second line, the
backup, metrics and routing units) or hardened it (a drop-in ``/etc/systemd/system/<unit>.d/*unde*.conf``:
redis, redis_exporter, etcd, PgBouncer, the exporters, Patroni, the PostgreSQL cluster). The lab's
stand-ins (``lab-*``) are not UNDE's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

EXPOSURE_MAX = 2.0
# Units that may not reach EXPOSURE_MAX, with the documented bound (name: (bound, reason)). None today.
EXPOSURE_BOUND: dict[str, tuple[float, str]] = {}

# Prints "<unit> <Type>" for every UNDE service on the host (run as root; sh, no bash needed).
LIST_UNITS = r"""
set -eu
cd /etc/systemd/system
{
  for f in *.service; do
    [ -f "$f" ] && head -n 1 "$f" | grep -q '^# Ansible managed' && echo "$f"
  done
  for d in *.service.d; do
    [ -d "$d" ] || continue
    for c in "$d"/*unde*.conf; do [ -f "$c" ] && { echo "${d%.d}"; break; }; done
  done
} | grep -v '^lab-' | sort -u | while read -r unit; do
  echo "$unit $(systemctl show -p Type --value "$unit")"
done
"""

_OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")
_FINDING = re.compile(r"^✗ (\S+)\s.*?(\d+\.\d+)\s*$")


def bound(unit: str) -> float:
    """The exposure a unit may have (``foo.service`` and ``foo`` alike)."""
    name = unit.removesuffix(".service")
    return EXPOSURE_BOUND.get(name, (EXPOSURE_MAX, ""))[0]


def exposure(output: str) -> float | None:
    """The overall exposure in ``systemd-analyze security <unit>``'s output (None if absent)."""
    found = _OVERALL.search(output)
    return float(found.group(2)) if found else None


def findings(output: str) -> list[str]:
    """The directives that cost exposure, costliest first ("ProtectProc= 0.2")."""
    rows = [(m.group(1), float(m.group(2))) for m in map(_FINDING.match, output.splitlines()) if m]
    return [f"{name} {cost}" for name, cost in sorted(rows, key=lambda r: -r[1])]


def table(rows: Iterable[tuple[str, float | None]]) -> str:
    """A plain table of (unit, exposure), each marked ok or over its bound."""
    rows = sorted(rows)
    width = max([len("unit"), *(len(unit) for unit, _ in rows)])
    lines = [f"{'unit':<{width}}  exposure  bound", f"{'-' * width}  --------  -----"]
    for unit, value in rows:
        mark = "n/a" if value is None else ("ok" if value <= bound(unit) else "OVER")
        shown = "-" if value is None else f"{value:.1f}"
        lines.append(f"{unit:<{width}}  {shown:>8}  {bound(unit):.1f} {mark}")
    return "\n".join(lines)


def over(rows: Iterable[tuple[str, float | None]]) -> list[str]:
    """The units over their bound, or not measured ("unit: 2.3 > 2.0")."""
    return [
        f"{unit}: {'not measured' if value is None else f'{value} > {bound(unit)}'}"
        for unit, value in sorted(rows)
        if value is None or value > bound(unit)
    ]


def _show(host: Any, unit: str) -> dict[str, str]:
    res = host.run("systemctl show -p ActiveState -p SubState -p Result %s", unit)
    return dict(line.split("=", 1) for line in str(res.stdout).splitlines() if "=" in line)


def host_report(host: Any, name: str) -> tuple[str, list[str]]:
    """(table, problems) for the UNDE services on a lab host (a testinfra host, as root): each
    long-running one active, each oneshot one not failed (a failed one is run once more and must
    succeed) and its timer (if it has one) active,
    each exposed at most its bound."""
    listing = host.run("sh -c %s", LIST_UNITS)
    if listing.rc != 0:
        return "", [f"{name}: listing the units failed: {listing.stderr}"]
    units = [line.split() for line in str(listing.stdout).splitlines() if line.strip()]
    rows: list[tuple[str, float | None]] = []
    problems: list[str] = []
    for unit, kind in (u if len(u) == 2 else (u[0], "") for u in units):
        state = _show(host, unit)
        running = state.get("ActiveState") == "active"
        finished = state.get("ActiveState") != "failed" and state.get("Result") == "success"
        if kind == "oneshot" and not finished:
            # a oneshot's last run may have failed for a reason of its own (the metrics ran while a
            # drill stopped the database): it is run once more, and that run must succeed
            host.run("systemctl start %s", unit)
            state = _show(host, unit)
            finished = state.get("ActiveState") != "failed" and state.get("Result") == "success"
        if not (finished if kind == "oneshot" else running):
            journal = host.run("journalctl -u %s -n 20 --no-pager -o cat", unit)
            problems.append(f"{name}: {unit} ({kind}) is {state}; journal:\n{journal.stdout}")
        timer = unit.removesuffix(".service") + ".timer"
        if kind == "oneshot" and host.run("test -f /etc/systemd/system/%s", timer).rc == 0:
            timer_state = _show(host, timer)
            if timer_state.get("ActiveState") != "active":
                problems.append(f"{name}: {timer}, which starts {unit}, is {timer_state}")
        res = host.run("systemd-analyze security --no-pager %s", unit)
        value = exposure(str(res.stdout))
        rows.append((unit, value))
        if value is None or value > bound(unit):
            problems.append(
                f"{name}: {unit} exposure {value} > {bound(unit)} ({res.stderr.strip()[:200]}): "
                + ", ".join(findings(str(res.stdout)))
            )
    return f"{name}:\n{table(rows)}" if rows else f"{name}: no UNDE unit", problems

"""Filter ``unde_pgbouncer_stale``: which settings the running PgBouncer does not have yet.

PgBouncer has no configuration checker. After a reload the role reads ``SHOW CONFIG`` from the
admin console (``psql -At -F '|'``: key|value|[default|]changeable) and compares it with the
settings it wrote: a changeable setting that differs has not been reloaded yet (or the reload was
refused), one that is not changeable needs a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict


class Stale(TypedDict):
    reload: list[str]
    restart: list[str]
    missing: list[str]


class PgbouncerFilterError(ValueError):
    """Raised on SHOW CONFIG output the filter cannot read."""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def unde_pgbouncer_stale(show_config: Sequence[str], wanted: Mapping[str, Any]) -> Stale:
    """Compare ``SHOW CONFIG`` lines with the wanted settings.

    Returns:
        ``reload``: changeable settings whose running value differs; ``restart``: settings that
        differ and cannot change without a restart; ``missing``: wanted keys SHOW CONFIG lacks.
    """
    running: dict[str, tuple[str, bool]] = {}
    for line in show_config:
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 3 or fields[-1] not in ("yes", "no"):
            raise PgbouncerFilterError(f"unexpected SHOW CONFIG line: {line!r}")
        running[fields[0]] = (fields[1], fields[-1] == "yes")
    out = Stale(reload=[], restart=[], missing=[])
    for key in sorted(wanted):
        if key not in running:
            out["missing"].append(key)
            continue
        value, changeable = running[key]
        if value != _text(wanted[key]):
            out["reload" if changeable else "restart"].append(key)
    return out


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"unde_pgbouncer_stale": unde_pgbouncer_stale}

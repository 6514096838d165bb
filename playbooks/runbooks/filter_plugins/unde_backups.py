"""Filters of the backup runbooks (playbooks/runbooks): compare row counts, parse the output of
apply_deletions.sql. Pure functions, tested in tests/backups/test_runbook_filters.py."""

from __future__ import annotations

import csv
import io
import re
from typing import Any


class RunbookError(ValueError):
    """Malformed input, named."""


def unde_parse_row_counts(text: str, what: str = "row counts") -> dict[str, int]:
    """``schema.table,rows`` CSV lines (sql/row_counts.sql) -> {relation: rows}."""
    out: dict[str, int] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row:
            continue
        if len(row) != 2 or not row[1].strip().isdigit():
            raise RunbookError(f"{what}: line {n} is not 'relation,rows': {row!r}")
        out[row[0]] = int(row[1])
    return out


def unde_compare_row_counts(
    source: dict[str, int], restored: dict[str, int], database: str = ""
) -> list[dict[str, Any]]:
    """One row per relation of either side: source rows, restored rows, difference and a status:
    ``ok`` (equal), ``differs`` (both have it, counts differ: writes since the backup, or a bad
    backup), ``missing`` (not in the restored copy), ``extra`` (only in the restored copy)."""
    rows: list[dict[str, Any]] = []
    for rel in sorted(set(source) | set(restored)):
        s, r = source.get(rel), restored.get(rel)
        if r is None:
            status = "missing"
        elif s is None:
            status = "extra"
        else:
            status = "ok" if s == r else "differs"
        rows.append(
            {
                "database": database,
                "relation": rel,
                "source": s,
                "restored": r,
                "delta": (r or 0) - (s or 0),
                "status": status,
            }
        )
    return rows


def unde_row_count_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of compare rows, with a summary line."""
    head = ("database", "relation", "source", "restored", "delta", "status")
    body = [
        (
            str(r["database"]),
            str(r["relation"]),
            "-" if r["source"] is None else str(r["source"]),
            "-" if r["restored"] is None else str(r["restored"]),
            f"{r['delta']:+d}",
            str(r["status"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
    bad = sum(1 for r in rows if r["status"] != "ok")
    out.append(f"{len(rows)} relation(s), {len(rows) - bad} equal, {bad} not equal")
    return "\n".join(out)


APPLY_LINE = re.compile(r"^apply_deletions((?: \w+=\d+)+)$", re.M)


def unde_apply_deletions_result(stdout: str) -> dict[str, int]:
    """The counters printed by sql/apply_deletions.sql."""
    m = APPLY_LINE.search(stdout)
    if m is None:
        raise RunbookError(f"apply_deletions.sql printed no result line: {stdout[-500:]!r}")
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "unde_parse_row_counts": unde_parse_row_counts,
            "unde_compare_row_counts": unde_compare_row_counts,
            "unde_row_count_table": unde_row_count_table,
            "unde_apply_deletions_result": unde_apply_deletions_result,
        }

"""Fuzzing a FastAPI app in-process: schemathesis cases from the app's own OpenAPI plus hand-made
bodies (non-finite numbers, lone surrogates, non-UTF-8 bytes, NUL bytes, deep nesting, a body over
the size limit), sent through the test's :class:`~fastapi.testclient.TestClient` so the app runs
with its lifespan and its real backing stores. An answer is a finding when it is a 5xx or the app
raised; 503 is a finding too (no store is stopped during a fuzz run).

    report = fuzz_app(client, "persona_agent")
    assert report.findings == [], report.summary()

The budget is fixed and the run deterministic: hypothesis ``derandomize=True`` (the examples
follow from the operation's schema), ``max_examples`` per operation and generation mode (positive
and negative), no example database, no shrinking.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Err

__all__ = ["HAND_MADE_BODIES", "FuzzReport", "fuzz_app", "hand_made", "schema_cases"]

log = logging.getLogger(__name__)

#: (name, raw body): the shapes that used to crash the services or could
HAND_MADE_BODIES: tuple[tuple[str, bytes], ...] = (
    ("nan", b'{"user_id": "00000000-0000-4000-8000-000000000001", "x": NaN, "lat": NaN}'),
    ("infinity", b'{"value": Infinity, "lat": Infinity, "lng": -Infinity}'),
    ("overflow", b'{"lat": 1e400, "lng": -1e400, "top_k": 1e400}'),
    ("big_int", b'{"top_k": ' + b"9" * 5000 + b"}"),
    ("lone_surrogate", b'{"text": "\\ud800", "url": "\\udfff", "exchange_id": "\\ud800"}'),
    ("surrogate_key", b'{"\\ud800": 1}'),
    ("not_utf8", b'{"text": "\xff\xfe\xfd"}'),
    ("utf8_surrogate_bytes", b'{"text": "\xed\xa0\x80"}'),
    ("nul", b'{"user_id": "\\u0000", "exchange_id": "a\\u0000b", "text": "\\u0000", "url": "\\u0000"}'),
    ("raw_nul", b'{"text": "a\x00b"}'),
    ("deep", b"[" * 5000 + b"]" * 5000),
    ("deep_escaped", b"[" * 5000 + b'"\\u0041"' + b"]" * 5000),
    ("not_json", b"\x00\x01\x02 not json"),
    ("empty", b""),
    ("array", b"[]"),
    ("null", b"null"),
    ("huge", b'{"text": "' + b"a" * (2 * 1024 * 1024) + b'"}'),
)
_BODY_METHODS = ("post", "put", "patch")


@dataclass
class FuzzReport:
    """What a fuzz run sent and what came back."""

    service: str
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def record(self, what: str, status: int | None, detail: str = "") -> None:
        self.statuses[status if status is not None else 0] += 1
        if status is None or status >= 500:
            self.findings.append(f"{what} → {status if status is not None else 'raised'} {detail[:300]}")

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        lines = [f"{self.service}: {self.requests} requests ({statuses}); {len(self.findings)} 5xx"]
        return "\n".join([*lines, *self.findings[:20]])


def _send(client: TestClient, report: FuzzReport, what: str, **request: Any) -> None:
    try:
        r = client.request(**request)
    except Exception as exc:  # the app raised through the test client: unhandled
        report.record(what, None, f"{type(exc).__name__}: {exc}")
        return
    report.record(what, r.status_code, r.text)


def _param(value: Any) -> Any:
    """A query/header value httpx can send (schemathesis's negative cases may hold objects)."""
    if isinstance(value, list):
        return [v if isinstance(v, str | int | float) else json.dumps(v) for v in value]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    return json.dumps(value)


def _run_operation(
    client: TestClient, report: FuzzReport, operation: Any, mode: Any, max_examples: int
) -> None:
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    random.seed(f"{label}:{max_examples}")  # schemathesis draws some choices from ``random``

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(mode))
    def run(case: Any) -> None:
        kw = case.as_transport_kwargs(base_url=str(client.base_url))
        request: dict[str, Any] = {
            "method": kw["method"],
            "url": kw["url"],
            "headers": {k: str(_param(v)) for k, v in (kw.get("headers") or {}).items()},
            "params": {k: _param(v) for k, v in (kw.get("params") or {}).items()},
        }
        if "json" in kw:
            try:
                request["content"] = json.dumps(kw["json"], allow_nan=False).encode()
            except ValueError:
                return
        elif "data" in kw:
            request["content"] = kw["data"]
        try:
            _send(client, report, label, **request)
        except (TypeError, UnicodeEncodeError):  # a case the HTTP client cannot send
            return

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
        return


def schema_cases(
    client: TestClient, report: FuzzReport, *, max_examples: int = 40, exclude: Sequence[str] = ("/metrics",)
) -> None:
    """Every operation of the app's OpenAPI, ``max_examples`` cases each in the positive and the
    negative generation mode, sent through ``client``."""
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the app's own OpenAPI is broken: that is a finding too
            raise AssertionError(f"{report.service}: invalid OpenAPI: {result.err()}")
        operation = result.ok()
        if operation.path in exclude:
            continue
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _run_operation(client, report, operation, mode, max_examples)


def hand_made(
    client: TestClient, report: FuzzReport, bodies: Iterable[tuple[str, bytes]] = HAND_MADE_BODIES
) -> None:
    """Each hand-made body to every operation that takes a body, as JSON and without a content type."""
    spec = client.get("/openapi.json").json()
    for path, item in spec.get("paths", {}).items():
        if "{" in path:
            continue
        for method in _BODY_METHODS:
            if method not in item:
                continue
            for name, body in bodies:
                for headers in ({"content-type": "application/json"}, {}):
                    what = f"{method.upper()} {path} [{name}{'' if headers else ', no content type'}]"
                    _send(
                        client, report, what, method=method.upper(), url=path, content=body, headers=headers
                    )


def fuzz_app(
    client: TestClient, service: str, *, max_examples: int = 40, exclude: Sequence[str] = ("/metrics",)
) -> FuzzReport:
    """:func:`schema_cases` and :func:`hand_made` against ``client``; the report (logged)."""
    report = FuzzReport(service)
    schema_cases(client, report, max_examples=max_examples, exclude=exclude)
    hand_made(client, report)
    log.warning("fuzz %s", report.summary())
    return report

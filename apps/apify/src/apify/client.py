"""Apify API v2 client (https://docs.apify.com/api/v2): start an actor run, wait for it, page
through its default dataset, abort it when giving up.

Endpoints (OpenAPI in github.com/apify/apify-docs, ``apify-api/openapi/paths/``):

- ``POST /acts/{actorId}/runs?timeout=&maxItems=&memory=`` (body = the actor input) → 201
  ``{"data": Run}`` (``id``, ``status``, ``defaultDatasetId``, ``meta.userAgent``, ...);
  ``username/actor`` is written ``username~actor`` in the path. ``timeout`` (seconds) stops the run
  on Apify's side, ``maxItems`` caps what a pay-per-result actor may charge
  (``components/parameters/runAndBuildParameters.yaml``).
- ``GET /acts/{actorId}/runs?desc=1&limit=&startedAfter=`` → ``{"data": {"items": [RunShort]}}``,
  newest first: how a start whose response was lost is found again.
- ``GET /actor-runs/{runId}?waitForFinish=60`` → ``{"data": Run}``, blocking up to 60 s on Apify's
  side; terminal statuses SUCCEEDED, FAILED, TIMED-OUT, ABORTED (``schemas/common/ActorJobStatus``).
- ``POST /actor-runs/{runId}/abort`` → ``{"data": Run}``; a no-op for a run that already ended.
- ``GET /datasets/{datasetId}/items?format=json&offset=&limit=`` → a JSON array.

Starting a run is a paid, non-idempotent POST: it is sent once (the shared client does not retry a
POST). When its outcome is unknown (no response, or a 5xx/408 after the request went out) the run
may exist all the same, so the client looks it up before giving up: the start request carries a
unique ``User-Agent``, which Apify records as the run's ``meta.userAgent``, and the lookup lists the
actor's runs started since just before the request (``startedAfter``).

Dataset pages are read without ``clean``: Apify applies ``clean`` / ``skipEmpty`` / ``skipHidden``
after ``offset``/``limit``, so a filtered page may be short (or empty) in the middle of the dataset
(apify-client-python#964, apify-client-js#979). The client reads raw rows, advances the offset by
the rows read, stops at the first short page, and does the cleaning itself: empty items are
dropped and top-level fields starting with ``#`` (hidden fields) are removed.

The token travels in ``Authorization: Bearer``; GET retries (timeouts, 429 + Retry-After, 5xx) come
from :class:`unde_common.http.ProviderClient`. Every failure is an :class:`ApifyError` with a
readable message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from apify.settings import ApifySettings
from unde_common.http import ProviderClient, ProviderError, provider_config

log = logging.getLogger(__name__)

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"})
#: besides no response at all and any 5xx, the statuses of a start that may have created the run
#: anyway (the request timed out on Apify's side after the body went out)
AMBIGUOUS_STATUSES = frozenset({408})
#: seconds added to a waitForFinish poll for the round trip
_POLL_MARGIN_S = 15.0


class ApifyError(RuntimeError):
    """An Apify call or actor run failed."""


@dataclass(frozen=True)
class DatasetPage:
    """One page of dataset rows: ``offset`` of its first row, ``next_offset`` after its last, the
    cleaned ``items`` and each item's dataset position in ``positions``."""

    offset: int
    next_offset: int
    items: list[Any]
    positions: list[int]


def _data(answer: Any, what: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        raise ApifyError(f"apify: {what}: malformed answer (no 'data' object)")
    data: dict[str, Any] = answer["data"]
    return data


def _iso(moment: datetime) -> str:
    """``2025-09-01T00:00:00.000Z``: the ISO 8601 UTC form the API's date filters take."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _started_at(run: dict[str, Any]) -> datetime | None:
    value = run.get("startedAt")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _meta(run: dict[str, Any]) -> dict[str, Any]:
    meta = run.get("meta")
    return meta if isinstance(meta, dict) else {}


def clean_item(item: Any) -> Any | None:
    """What ``clean=true`` would return for one item: None for an empty item, else the item without
    its hidden (``#``-prefixed) top-level fields (docs: Get dataset items, "Hidden fields")."""
    if isinstance(item, dict):
        visible = {k: v for k, v in item.items() if not (isinstance(k, str) and k.startswith("#"))}
        return visible or None
    if item is None or item == [] or item == "":
        return None
    return item


class ApifyClient:
    def __init__(self, settings: ApifySettings) -> None:
        self.settings = settings
        cfg = provider_config(
            settings,
            "apify",
            str(settings.apify_base_url).rstrip("/"),
            headers={"Authorization": f"Bearer {settings.apify_token.get_secret_value()}"},
        )
        self.http = ProviderClient(cfg)

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ runs

    def run_params(self) -> dict[str, Any]:
        """Query parameters of a run start: the run's own timeout and item cap, memory if set."""
        s = self.settings
        params: dict[str, Any] = {"timeout": s.apify_run_timeout_s, "maxItems": s.apify_max_items}
        if s.apify_run_memory_mb:
            params["memory"] = s.apify_run_memory_mb
        return params

    def start_run(
        self, actor: str, run_input: dict[str, Any], *, marker: str | None = None
    ) -> dict[str, Any]:
        """Start ``actor`` once; the run object (``id``, ``status``, ``defaultDatasetId``).

        The start request's User-Agent is ``marker`` (unique per start; a random one by default). A
        start whose outcome is unknown is looked up (:meth:`find_started_run`) and that run is
        returned when it exists; the start is never sent twice."""
        actor_path = actor.replace("/", "~")
        marker = marker or f"unde-apify/{uuid.uuid4().hex}"
        since = datetime.now(UTC) - timedelta(seconds=self.settings.apify_start_clock_skew_s)
        try:
            answer = self.http.post_json(
                f"/acts/{actor_path}/runs",
                json=run_input,
                params=self.run_params(),
                headers={"User-Agent": marker},
                idempotent=False,  # a repeat would start (and pay for) a second run
            )
        except ProviderError as exc:
            ambiguous = exc.status is None or exc.status >= 500 or exc.status in AMBIGUOUS_STATUSES
            if not ambiguous:
                raise ApifyError(f"apify: starting actor {actor} failed: {exc}") from exc
            log.warning(
                "apify run start outcome unknown, looking the run up",
                extra={"actor": actor, "error": str(exc)},
            )
            found = self.find_started_run(actor, marker, since)
            if found is None:
                raise ApifyError(
                    f"apify: starting actor {actor} failed: {exc}; no run of it started since "
                    f"{_iso(since)} was found"
                ) from exc
            log.info("apify run start recovered", extra={"actor": actor, "run_id": found.get("id")})
            answer = {"data": found}
        run = _data(answer, f"start {actor}")
        if not run.get("id") or not run.get("defaultDatasetId"):
            raise ApifyError(f"apify: start {actor}: answer lacks id/defaultDatasetId")
        return run

    def find_started_run(self, actor: str, marker: str, since: datetime) -> dict[str, Any] | None:
        """The run of ``actor`` this client started with User-Agent ``marker`` at or after ``since``,
        looked for during ``APIFY_START_LOOKUP_S`` (a new run may take a moment to be listed)."""
        actor_path = actor.replace("/", "~")
        params = {"desc": 1, "limit": 10, "startedAfter": _iso(since)}
        deadline = time.monotonic() + self.settings.apify_start_lookup_s
        checked: set[str] = set()  # listed runs already read in full and found not ours
        while True:
            try:
                answer = self.http.get_json(f"/acts/{actor_path}/runs", params=params)
            except ProviderError as exc:
                raise ApifyError(f"apify: listing the runs of {actor} failed: {exc}") from exc
            data = _data(answer, f"runs of {actor}")
            items = data.get("items")
            if not isinstance(items, list):
                raise ApifyError(f"apify: runs of {actor}: malformed answer (no 'items' list)")
            for listed in items:
                if not isinstance(listed, dict) or not listed.get("id"):
                    continue
                started = _started_at(listed)
                if started is None or started < since:
                    continue
                run: dict[str, Any] = listed
                if "userAgent" not in _meta(run):  # the listing left it out: the run object has it
                    if str(run["id"]) in checked:
                        continue
                    checked.add(str(run["id"]))
                    run = self.get_run(str(run["id"]))
                if _meta(run).get("userAgent") == marker:
                    return run
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def get_run(self, run_id: str, *, wait_s: int = 0) -> dict[str, Any]:
        params = {"waitForFinish": wait_s} if wait_s else {}
        # waitForFinish holds the request up to wait_s on Apify's side: this one call reads longer
        base = self.http.config.timeout()
        read_s = max(base.read or 0.0, wait_s + _POLL_MARGIN_S)
        timeout = httpx.Timeout(connect=base.connect, read=read_s, write=base.write, pool=base.pool)
        try:
            answer = self.http.get_json(
                f"/actor-runs/{run_id}", params=params, timeout=timeout, deadline_s=read_s + _POLL_MARGIN_S
            )
        except ProviderError as exc:
            raise ApifyError(f"apify: reading run {run_id} failed: {exc}") from exc
        return _data(answer, f"run {run_id}")

    def abort_run(self, run_id: str) -> dict[str, Any]:
        """Abort ``run_id`` (a run that already ended is left as it is)."""
        try:
            # aborting twice is harmless: the API ignores an abort of a finished run
            answer = self.http.post_json(f"/actor-runs/{run_id}/abort", idempotent=True)
        except ProviderError as exc:
            raise ApifyError(f"apify: aborting run {run_id} failed: {exc}") from exc
        return _data(answer, f"abort {run_id}")

    def wait_run(self, run_id: str, *, timeout_s: float) -> dict[str, Any]:
        """Poll until the run is terminal; ApifyError unless it SUCCEEDED in time. A run still going
        when ``timeout_s`` is up is aborted (it would otherwise keep costing)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            wait = int(max(0, min(self.settings.apify_wait_poll_s, remaining)))
            run = self.get_run(run_id, wait_s=wait)
            status = str(run.get("status", ""))
            if status == "SUCCEEDED":
                return run
            if status in TERMINAL:
                message = run.get("statusMessage") or ""
                raise ApifyError(
                    f"apify: actor run {run_id} ended {status}" + (f": {message}" if message else "")
                )
            if time.monotonic() >= deadline:
                note = ""
                try:
                    aborted = self.abort_run(run_id)
                    note = f"; aborted (now {aborted.get('status', 'unknown')})"
                except ApifyError as exc:
                    note = f"; abort failed: {exc}"
                raise ApifyError(
                    f"apify: actor run {run_id} still {status or 'unknown'} after {timeout_s:.0f}s{note}"
                )
            if wait == 0:
                time.sleep(min(1.0, max(0.0, remaining)))

    # ------------------------------------------------------------------ dataset

    def iter_pages(self, dataset_id: str, *, offset: int = 0, page_size: int = 1000) -> Iterator[DatasetPage]:
        """The dataset's pages from row ``offset`` on, each cleaned (see the module docstring)."""
        while True:
            params = {"format": "json", "offset": offset, "limit": page_size}
            try:
                rows = self.http.get_json(f"/datasets/{dataset_id}/items", params=params)
            except ProviderError as exc:
                raise ApifyError(
                    f"apify: reading dataset {dataset_id} at offset {offset} failed: {exc}"
                ) from exc
            if not isinstance(rows, list):
                raise ApifyError(f"apify: dataset {dataset_id} page at offset {offset} is not a JSON array")
            if not rows:
                return
            items: list[Any] = []
            positions: list[int] = []
            for i, row in enumerate(rows):
                item = clean_item(row)
                if item is not None:
                    items.append(item)
                    positions.append(offset + i)
            yield DatasetPage(offset, offset + len(rows), items, positions)
            if len(rows) < page_size:
                return
            offset += len(rows)

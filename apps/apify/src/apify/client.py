"""Apify API v2 client (https://docs.apify.com/api/v2): start an actor run, wait for it, page
through its default dataset.

- ``POST /acts/{actorId}/runs`` (body = the actor input) → ``{"data": {"id", "status",
  "defaultDatasetId", ...}}``; ``username/actor`` is written ``username~actor`` in the path.
- ``GET /actor-runs/{runId}?waitForFinish=60`` → ``{"data": {...}}``, blocking up to 60 s on
  Apify's side; terminal statuses SUCCEEDED, FAILED, TIMED-OUT, ABORTED.
- ``GET /datasets/{datasetId}/items?format=json&clean=true&offset=&limit=`` → a JSON array.

The token travels in ``Authorization: Bearer``; retries (timeouts, 429 + Retry-After, 5xx) come from
:class:`unde_common.http.ProviderClient`. Every failure is an :class:`ApifyError` with a readable
message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from apify.settings import ApifySettings
from unde_common.http import ProviderClient, ProviderError, provider_config

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"})


class ApifyError(RuntimeError):
    """An Apify call or actor run failed."""


def _data(answer: Any, what: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        raise ApifyError(f"apify: {what}: malformed answer (no 'data' object)")
    data: dict[str, Any] = answer["data"]
    return data


class ApifyClient:
    def __init__(self, settings: ApifySettings) -> None:
        self.settings = settings
        cfg = provider_config(
            settings,
            "apify",
            str(settings.apify_base_url).rstrip("/"),
            headers={"Authorization": f"Bearer {settings.apify_token.get_secret_value()}"},
            # waitForFinish holds the request up to 60 s on Apify's side
            read_timeout_s=max(settings.http_read_timeout_s, settings.apify_wait_poll_s + 15.0),
        )
        self.http = ProviderClient(cfg)

    def close(self) -> None:
        self.http.close()

    def start_run(self, actor: str, run_input: dict[str, Any]) -> dict[str, Any]:
        """Start ``actor``; the run object (``id``, ``status``, ``defaultDatasetId``)."""
        actor_path = actor.replace("/", "~")
        params: dict[str, Any] = {}
        if self.settings.apify_run_memory_mb:
            params["memory"] = self.settings.apify_run_memory_mb
        try:
            answer = self.http.post_json(f"/acts/{actor_path}/runs", json=run_input, params=params)
        except ProviderError as exc:
            raise ApifyError(f"apify: starting actor {actor} failed: {exc}") from exc
        run = _data(answer, f"start {actor}")
        if not run.get("id") or not run.get("defaultDatasetId"):
            raise ApifyError(f"apify: start {actor}: answer lacks id/defaultDatasetId")
        return run

    def get_run(self, run_id: str, *, wait_s: int = 0) -> dict[str, Any]:
        params = {"waitForFinish": wait_s} if wait_s else {}
        try:
            answer = self.http.get_json(f"/actor-runs/{run_id}", params=params)
        except ProviderError as exc:
            raise ApifyError(f"apify: reading run {run_id} failed: {exc}") from exc
        return _data(answer, f"run {run_id}")

    def wait_run(self, run_id: str, *, timeout_s: float) -> dict[str, Any]:
        """Poll until the run is terminal; ApifyError unless it SUCCEEDED in time."""
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
                raise ApifyError(
                    f"apify: actor run {run_id} still {status or 'unknown'} after {timeout_s:.0f}s"
                )
            if wait == 0:
                time.sleep(min(1.0, max(0.0, remaining)))

    def iter_pages(
        self, dataset_id: str, *, offset: int = 0, page_size: int = 1000
    ) -> Iterator[tuple[int, list[Any]]]:
        """``(offset, items)`` pages of the dataset, from ``offset`` on."""
        while True:
            params = {"format": "json", "clean": "true", "offset": offset, "limit": page_size}
            try:
                items = self.http.get_json(f"/datasets/{dataset_id}/items", params=params)
            except ProviderError as exc:
                raise ApifyError(
                    f"apify: reading dataset {dataset_id} at offset {offset} failed: {exc}"
                ) from exc
            if not isinstance(items, list):
                raise ApifyError(f"apify: dataset {dataset_id} page at offset {offset} is not a JSON array")
            if not items:
                return
            yield offset, items
            if len(items) < page_size:
                return
            offset += len(items)

"""Contract fixtures of the Apify API v2 (tests/contracts/apify_*.json, each citing its source in
the API's OpenAPI description): the real ApifyClient sends exactly the documented request and
parses the documented response (the strict simulator replays the documented answer and records what
it received); the simulator itself answers as the documentation says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from apify.client import ApifyClient
from apify.collectors import COLLECTORS
from apify.settings import ApifySettings
from unde_testkit.apptests import serving
from unde_testkit.catalog_testing import ApifySimulator

CONTRACTS = Path(__file__).parent / "contracts"


def load(name: str) -> Any:
    return json.loads((CONTRACTS / f"apify_{name}.json").read_text())


def fixtures() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(CONTRACTS.glob("apify_*.json")):
        data = json.loads(path.read_text())
        out.extend(data if isinstance(data, list) else [data])
    return out


@pytest.fixture(scope="module")
def apify_api() -> Iterator[tuple[ApifySimulator, str]]:
    yield from serving(ApifySimulator())


@pytest.fixture
def client(apify_api: tuple[ApifySimulator, str]) -> Iterator[ApifyClient]:
    sim, url = apify_api
    sim.reset()
    sim.datasets["datasaurus/zara"] = []
    values: dict[str, Any] = {
        "apify_base_url": f"{url}/v2",
        "apify_token": "apify-test-token",
        "apify_wait_poll_s": 60,
    }
    settings = ApifySettings(**values)
    c = ApifyClient(settings)
    yield c
    c.close()


def sent(sim: ApifySimulator, index: int = -1) -> dict[str, Any]:
    request = sim.requests[index]
    return {k: request[k] for k in ("method", "path", "query")}


def expected(request: dict[str, Any]) -> dict[str, Any]:
    return {k: request[k] for k in ("method", "path", "query")}


def test_every_fixture_names_its_source() -> None:
    all_fixtures = fixtures()
    assert len(all_fixtures) == 6
    assert all(f["source"] and f["request"] and f["response"] for f in all_fixtures)


def test_run_start(apify_api: tuple[ApifySimulator, str], client: ApifyClient) -> None:
    sim = apify_api[0]
    fixture = load("run_start")
    sim.answer_next("start", fixture["response"]["status"], fixture["response"]["json"])
    settings = client.settings

    run = client.start_run("datasaurus/zara", COLLECTORS["zara"].run_input(settings))

    assert sent(sim) == expected(fixture["request"])
    assert sim.requests[-1]["json"] == fixture["request"]["json"]
    assert run == fixture["response"]["json"]["data"]


def test_runs_list_finds_a_lost_start(apify_api: tuple[ApifySimulator, str], client: ApifyClient) -> None:
    sim = apify_api[0]
    fixture = load("runs_list")
    sim.answer_next("list_runs", fixture["response"]["status"], fixture["response"]["json"])
    then = fixture["then"]
    sim.answer_next("run_status", then["response"]["status"], then["response"]["json"])
    since = datetime(2019, 11, 30, 7, 0, tzinfo=UTC)

    run = client.find_started_run("datasaurus/zara", "Mozilla/5.0 (iPad)", since)

    assert [sent(sim, 0), sent(sim, 1)] == [expected(fixture["request"]), expected(then["request"])]
    assert run == then["response"]["json"]["data"]


def test_run_get(apify_api: tuple[ApifySimulator, str], client: ApifyClient) -> None:
    sim = apify_api[0]
    fixture = load("run_get")
    sim.answer_next("run_status", fixture["response"]["status"], fixture["response"]["json"])

    run = client.wait_run("HG7ML7M8z78YcAPEB", timeout_s=120)

    assert sent(sim) == expected(fixture["request"])
    assert run == fixture["response"]["json"]["data"]


def test_run_abort(apify_api: tuple[ApifySimulator, str], client: ApifyClient) -> None:
    sim = apify_api[0]
    fixture = load("run_abort")
    sim.answer_next("abort", fixture["response"]["status"], fixture["response"]["json"])

    run = client.abort_run("HG7ML7M8z78YcAPEB")

    assert sent(sim) == expected(fixture["request"])
    assert run["status"] == "ABORTED" and run == fixture["response"]["json"]["data"]


@pytest.mark.parametrize("name", ["items", "hidden_field"])
def test_dataset_items(apify_api: tuple[ApifySimulator, str], client: ApifyClient, name: str) -> None:
    sim = apify_api[0]
    fixture = next(f for f in load("dataset_items") if f["name"] == name)
    response = fixture["response"]
    sim.answer_next("items", response["status"], response["json"], response["headers"])

    pages = list(client.iter_pages("WkzbQMuFYuamGv3YF", page_size=1000))

    assert [sent(sim)] == [expected(fixture["request"])]
    assert [page.__dict__ for page in pages] == [fixture["parsed"]]


def test_the_simulator_answers_the_documented_errors(apify_api: tuple[ApifySimulator, str]) -> None:
    sim, url = apify_api
    sim.reset()
    sim.datasets["datasaurus/zara"] = []
    auth = {"Authorization": "Bearer apify-test-token"}
    bad_token = httpx.post(
        f"{url}/v2/acts/datasaurus~zara/runs", json={}, headers={"Authorization": "Bearer x"}
    )
    assert (bad_token.status_code, bad_token.json()["error"]["type"]) == (401, "invalid-token")
    unknown = httpx.post(f"{url}/v2/acts/nobody~nothing/runs", json={}, headers=auth)
    assert (unknown.status_code, unknown.json()["error"]["type"]) == (404, "record-not-found")
    memory = httpx.post(f"{url}/v2/acts/datasaurus~zara/runs", json={}, params={"memory": 300}, headers=auth)
    assert (memory.status_code, memory.json()["error"]["type"]) == (400, "invalid-input")
    assert sim.started == []

"""Contract fixture of the Inditex mobile API stock call (tests/contracts/zara_stock.json, citing
where its shape comes from: the endpoint is unofficial, so public store-stock scrapers and Zara's
product JSON are the sources): the real poll sends exactly that request for one colour reference
and parses that response; the strict simulator refuses a part number of another form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scraper import availability
from scraper.runtime import Runtime
from scraper.settings import ScraperSettings
from unde_testkit.apptests import serving
from unde_testkit.catalog_testing import ZaraSimulator

FIXTURE: dict[str, Any] = json.loads((Path(__file__).parent / "contracts" / "zara_stock.json").read_text())


@pytest.fixture(scope="module")
def zara() -> Iterator[tuple[ZaraSimulator, str]]:
    yield from serving(ZaraSimulator())


def test_the_fixture_names_its_source() -> None:
    assert FIXTURE["source"] and FIXTURE["request"] and FIXTURE["response"]


def test_the_poll_sends_the_documented_request_and_parses_the_response(
    zara: tuple[ZaraSimulator, str],
) -> None:
    sim, url = zara
    sim.reset()
    request, response = FIXTURE["request"], FIXTURE["response"]
    sim.canned.append((response["status"], response["json"]))
    values: dict[str, Any] = {"zara_api_base_url": url}
    rt = Runtime(ScraperSettings(**values))
    reference, campaign = (
        request["path"].rsplit("/", 1)[1],
        request["path"].split("/campaign/")[1].split("/")[0],
    )

    stock = availability.fetch_stock(rt, availability.ColourRef(reference, campaign, "Negro"))

    assert sim.calls == [{k: request[k] for k in ("method", "path", "query", "headers")}]
    assert stock == {int(store): sizes for store, sizes in FIXTURE["parsed"].items()}


@pytest.mark.parametrize(
    ("part_number", "why"),
    [
        ("315220723", "a 9-digit product id"),
        ("0558436180002", "a 13-digit size reference"),
        ("05584361999", "unknown"),
    ],
)
def test_the_simulator_refuses_other_part_numbers(
    zara: tuple[ZaraSimulator, str], part_number: str, why: str
) -> None:
    sim, url = zara
    sim.reset()
    sim.stock["05584361800"] = {6643: {"S": 1}}
    path = FIXTURE["request"]["path"].rsplit("/", 1)[0]
    answer = httpx.get(f"{url}{path}/{part_number}", params=FIXTURE["request"]["query"])
    assert answer.status_code == 404, why
    wrong_campaign = httpx.get(
        f"{url}{path.replace('V2024', 'I2024')}/05584361800", params=FIXTURE["request"]["query"]
    )
    assert wrong_campaign.status_code == 404
    sim.campaigns["05584361800"] = "V2024"
    assert httpx.get(f"{url}{path}/05584361800", params=FIXTURE["request"]["query"]).status_code == 200
    assert httpx.get(f"{url}{path}/05584361800").status_code == 400  # no physicalStoreId

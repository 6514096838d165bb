"""The Intelistyle client against the loopback DialogueSimulator. Intelistyle publishes no API
reference: the fixture (tests/contracts/intelistyle_recommendations.json) is the client's assumed
contract, so these tests pin what the client sends and how leniently it reads; every failure is an
IntelistyleError, which the orchestrator turns into a degraded answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from llm_orchestrator.providers.intelistyle import (
    IntelistyleClient,
    IntelistyleError,
    StylistItem,
    StylistRequest,
)
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_testkit.dialogue_simulators import DialogueSimulator
from unde_testkit.testing import EnvWriterFactory, LoopbackServer

FIXTURE = json.loads((Path(__file__).parent / "contracts" / "intelistyle_recommendations.json").read_text())[
    0
]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DialogueSimulator, str]]:
    sim = DialogueSimulator(keys={"intelistyle": "is-key"})
    with LoopbackServer(sim.app) as server:
        yield sim, sim.base_urls(server.url)["intelistyle"]


@pytest.fixture
def sim(served: tuple[DialogueSimulator, str]) -> Iterator[DialogueSimulator]:
    served[0].reset()
    yield served[0]
    served[0].reset()


def ask(client: IntelistyleClient, request: StylistRequest) -> list[StylistItem]:
    async def go() -> list[StylistItem]:
        try:
            return await client.get_recommendations(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def client(url: str, key: str = "is-key") -> IntelistyleClient:
    return IntelistyleClient(url, SecretStr(key), timeout_s=1.0)


def test_the_client_sends_the_assumed_request_and_reads_the_answer(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    expected = FIXTURE["request"]
    sim.answer_next("intelistyle", 200, FIXTURE["response"]["json"])
    items = ask(client(served[1]), StylistRequest("a jacket for grey chinos", gender="male", limit=2))
    sent = sim.calls_of("intelistyle")[-1]
    assert sent["path"] == "/intelistyle/v3" + expected["path"] and sent["json"] == expected["json"]
    assert {k: v for k, v in sent["headers"].items() if k in expected["headers"]} == expected["headers"]
    assert [i.item_id for i in items] == FIXTURE["parsed"]["item_ids"]
    assert (items[0].price, items[0].currency, items[0].store) == (49.95, "EUR", "Zara Gran Via")
    assert (items[1].name, items[1].price) == ("Harrington jacket", 89.0)


def test_the_simulator_answers_its_items(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    items = ask(client(served[1]), StylistRequest("linen shirt", limit=1))
    assert [i.item_id for i in items] == ["sku-1"]


@pytest.mark.parametrize("fault", ["error500", "malformed", "timeout", "rate_limited"])
def test_failures_are_intelistyle_errors(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, fault: str
) -> None:
    sim.fault("intelistyle", fault, delay_s=30, retry_after_s=0.05)
    with pytest.raises(IntelistyleError):
        ask(client(served[1]), StylistRequest("linen shirt"))


def test_a_wrong_key_or_an_answer_without_items_is_an_error(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    with pytest.raises(IntelistyleError, match="401"):
        ask(client(served[1], key="wrong"), StylistRequest("linen shirt"))
    sim.answer_next("intelistyle", 200, {"status": "ok"})
    with pytest.raises(IntelistyleError, match="no list"):
        ask(client(served[1]), StylistRequest("linen shirt"))


def test_from_settings(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, env_writer: EnvWriterFactory
) -> None:
    write_env = env_writer(LlmOrchestratorSettings)
    write_env(sim.settings_env(served[1].removesuffix("/intelistyle/v3")))
    items = ask(
        IntelistyleClient.from_settings(LlmOrchestratorSettings.load()), StylistRequest("linen shirt")
    )
    assert items and sim.calls_of("intelistyle")[-1]["headers"]["x-api-key"] == "is-key"


def test_recommend_is_the_orchestrators_call(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    """The message is the query, the profile's gender and the first catalog product go along; the
    items come back as dicts the response description and the prompt read."""

    async def go() -> dict[str, object]:
        stylist = client(served[1])
        try:
            return await stylist.recommend("what goes with it?", {"gender": "female"}, [{"sku_id": "ZR-1"}])
        finally:
            await stylist.aclose()

    result = asyncio.run(go())
    sent = sim.calls_of("intelistyle")[-1]["json"]
    assert sent == {"query": "what goes with it?", "limit": 6, "gender": "female", "product_id": "ZR-1"}
    items = result["items"]
    assert isinstance(items, list) and items[0]["item_id"] == "sku-1" and items[0]["brand"] == "Zara"

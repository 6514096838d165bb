"""The Cohere /v2/embed client against the loopback DialogueSimulator: the documented request
(tests/contracts/cohere_embed.json), queries as search_query and stored texts as search_document,
96 texts per call at most, vectors checked against EMBEDDING_DIM, harmless retries, failures as
EmbeddingError; the simulator's deterministic embeddings put texts that share words close."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from llm_orchestrator.providers.embedding import COHERE_MAX_TEXTS, CohereEmbedder, EmbeddingError
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_testkit.dialogue_simulators import DialogueSimulator, hashed_embedding
from unde_testkit.testing import EnvWriterFactory, LoopbackServer

FIXTURES = {
    f["name"]: f for f in json.loads((Path(__file__).parent / "contracts" / "cohere_embed.json").read_text())
}
T = TypeVar("T")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DialogueSimulator, str]]:
    sim = DialogueSimulator(keys={"cohere": "co-key"})
    with LoopbackServer(sim.app) as server:
        yield sim, sim.base_urls(server.url)["cohere"]


@pytest.fixture
def sim(served: tuple[DialogueSimulator, str]) -> Iterator[DialogueSimulator]:
    served[0].reset()
    yield served[0]
    served[0].reset()


def embedder(
    url: str, *, model: str = "embed-multilingual-v3.0", dim: int = 1024, key: str = "co-key"
) -> CohereEmbedder:
    return CohereEmbedder(url, SecretStr(key), model, dim=dim, timeout_s=2.0)


def run(client: CohereEmbedder, call: Callable[[CohereEmbedder], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_the_client_sends_the_documented_request_and_parses_the_documented_answer(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    fixture = FIXTURES["embed_query"]
    expected = fixture["request"]
    answer: dict[str, Any] = json.loads(json.dumps(fixture["response"]["json"]))
    vector = [round(0.001 * i, 3) for i in range(1024)]
    answer["embeddings"]["float"] = [vector]
    sim.answer_next("cohere", 200, answer)
    result = run(embedder(served[1]), lambda e: e.embed_query(expected["json"]["texts"][0]))
    sent = sim.calls_of("cohere")[-1]
    assert (sent["method"], sent["path"], sent["query"]) == (
        expected["method"],
        "/cohere" + expected["path"],
        {},
    )
    assert sent["json"] == expected["json"]
    assert {k: v for k, v in sent["headers"].items() if k in expected["headers"]} == expected["headers"]
    assert result == vector and len(result) == fixture["parsed"]["dim"]


def test_the_fixture_model_is_the_settings_default() -> None:
    assert (
        FIXTURES["embed_query"]["request"]["json"]["model"]
        == LlmOrchestratorSettings.model_fields["embedding_model"].default
    )


def test_documents_are_search_document_and_come_back_in_order(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    texts = [f"message number {i} about a red dress" for i in range(2 * COHERE_MAX_TEXTS + 8)]
    vectors = run(embedder(served[1]), lambda e: e.embed_documents(texts))
    calls = sim.calls_of("cohere")
    assert sorted(len(c["json"]["texts"]) for c in calls) == [8, COHERE_MAX_TEXTS, COHERE_MAX_TEXTS]
    assert {c["json"]["input_type"] for c in calls} == {"search_document"}
    assert vectors == [hashed_embedding(t, 1024) for t in texts]


def test_a_dimension_mismatch_is_a_clear_error(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    with pytest.raises(EmbeddingError) as info:
        run(embedder(served[1], dim=768), lambda e: e.embed_query("hi"))
    assert (
        info.value.kind == "dimension"
        and "EMBEDDING_DIM is 768" in str(info.value)
        and "1024" in str(info.value)
    )
    with pytest.raises(EmbeddingError) as light:
        run(embedder(served[1], model="embed-multilingual-light-v3.0"), lambda e: e.embed_query("hi"))
    assert light.value.kind == "dimension" and "384" in str(light.value)


def test_a_failed_embed_is_retried_once(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    sim.fault("cohere", "error500", times=1)
    assert len(run(embedder(served[1]), lambda e: e.embed_query("hi"))) == 1024
    assert sim.hits["cohere"] == 2


@pytest.mark.parametrize("fault", ["error503", "rate_limited", "malformed", "timeout"])
def test_failures_are_embedding_errors(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, fault: str
) -> None:
    sim.fault("cohere", fault, delay_s=30, retry_after_s=0.1)
    with pytest.raises(EmbeddingError) as info:
        run(embedder(served[1]), lambda e: e.embed_query("hi"))
    assert info.value.kind == "provider"


def test_a_wrong_key_or_model_is_an_embedding_error(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    with pytest.raises(EmbeddingError, match="401"):
        run(embedder(served[1], key="wrong"), lambda e: e.embed_query("hi"))
    with pytest.raises(EmbeddingError, match="404"):
        run(embedder(served[1], model="embed-multilingual-v2.0"), lambda e: e.embed_query("hi"))


def test_the_simulator_refuses_what_cohere_refuses(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    missing = FIXTURES["missing_input_type"]
    auth = {"authorization": "Bearer co-key"}
    with httpx.Client() as http:
        answer = http.post(served[1] + "/v2/embed", headers=auth, json=missing["request"]["json"])
        assert answer.status_code == missing["response"]["status"]
        assert answer.json()["message"] == missing["response"]["json"]["message"]
        body = {
            "model": "embed-multilingual-v3.0",
            "input_type": "search_query",
            "embedding_types": ["float"],
        }
        too_many = http.post(served[1] + "/v2/embed", headers=auth, json={**body, "texts": ["x"] * 97})
        assert too_many.status_code == 400 and "96" in too_many.json()["message"]
        no_types = http.post(
            served[1] + "/v2/embed",
            headers=auth,
            json={"model": body["model"], "input_type": "search_query", "texts": ["x"]},
        )
        assert no_types.status_code == 400


def test_texts_sharing_words_are_close() -> None:
    """What the retrieval-quality benchmark relies on: shared words → high cosine, none → ~0;
    a query and a document of the same words get the same vector."""
    a, b, c = (
        np.array(hashed_embedding(t))
        for t in ("my red summer dress", "the red dress for summer", "car engine oil")
    )
    assert float(np.linalg.norm(a)) == pytest.approx(1.0)
    assert float(a @ b) > 0.6 > abs(float(a @ c)) + 0.4
    assert hashed_embedding("Red DRESS") == hashed_embedding("red dress")


def test_from_settings(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, env_writer: EnvWriterFactory
) -> None:
    write_env = env_writer(LlmOrchestratorSettings)
    write_env(sim.settings_env(served[1].removesuffix("/cohere")))
    client = CohereEmbedder.from_settings(LlmOrchestratorSettings.load())
    assert len(run(client, lambda e: e.embed_query("navy jacket"))) == 1024
    assert sim.calls_of("cohere")[-1]["json"]["input_type"] == "search_query"

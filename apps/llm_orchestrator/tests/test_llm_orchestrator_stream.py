# ruff: noqa: RUF001  (Cyrillic and typographic quotes on purpose)
"""The sentence stream: the pure splitter, the publisher against a real Redis (and a Redis that is
down), and whole turns on the dialogue test bed with a real subscriber on ``orch:stream:<id>``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from llm_orchestrator.dialogue import new_ids, run_turn
from llm_orchestrator.metrics import OrchestratorMetrics
from llm_orchestrator.runtime import Runtime
from llm_orchestrator.stream import SentenceStream, channel_of, split_sentences
from unde_common.metrics import AppMetrics
from unde_testkit.dialogue_testbed import DialogueBed
from unde_testkit.testing import PostgresHandle, free_port

# ------------------------------------------------------------------ the splitter


@pytest.mark.parametrize(
    ("text", "sentences", "rest"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", " How are you?"], " Fine!"),
        ("Wait... what?! Really", ["Wait...", " what?!"], " Really"),
        ("Hmm… okay. ", ["Hmm…", " okay."], " "),
        ("It costs 3.5 euros. Deal", ["It costs 3.5 euros."], " Deal"),
        ("Try e.g. a scarf, i.e. silk. Next", ["Try e.g. a scarf, i.e. silk."], " Next"),
        ("Ask Dr. Smith or J. Doe. Then", ["Ask Dr. Smith or J. Doe."], " Then"),
        ('She said "Go." Then left', ['She said "Go."'], " Then left"),
        ("(Really.) Yes", ["(Really.)"], " Yes"),
        ("Title\nBody line\n\nMore", ["Title", "\nBody line"], "\n\nMore"),
        ("То есть, т.е. так. Да", ["То есть, т.е. так."], " Да"),
        ("Привет! Как дела?", ["Привет!"], " Как дела?"),
        ("The end.", [], "The end."),  # undecided: "." may be the start of a decimal
        ("The price is 3.", [], "The price is 3."),
        ("no end yet", [], "no end yet"),
        ("", [], ""),
        ("\n\n", [], "\n\n"),
    ],
)
def test_split_sentences(text: str, sentences: list[str], rest: str) -> None:
    got, left = split_sentences(text)
    assert (got, left) == (sentences, rest)
    assert "".join(got) + left == text


def test_final_makes_the_rest_the_last_sentence() -> None:
    assert split_sentences("One. Two", final=True) == (["One.", " Two"], "")
    assert split_sentences("The price is 3.", final=True) == (["The price is 3."], "")
    assert split_sentences("  ", final=True) == ([], "  ")


ANSWERS = [
    "Hello there. A navy blazer works, e.g. with chinos! Want more? Sure…\nList:\n- one\n- two",
    "It is 3.5 km away. Dr. Lee said so. Ok?!  Fine.",
    "Привет! Подберу образ на 12.5 тыс. рублей, т.е. недорого. Хочешь?",
]


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_pieces_of_any_size_give_the_sentences_of_the_whole(answer: str, size: int) -> None:
    """Fed in pieces (as a provider streams), the sentences are those of the whole text, and they
    join to the text."""
    whole, rest = split_sentences(answer, final=True)
    assert rest == "" and "".join(whole) == answer
    out: list[str] = []
    buffer = ""
    for i in range(0, len(answer), size):
        done, buffer = split_sentences(buffer + answer[i : i + size])
        out += done
    done, buffer = split_sentences(buffer, final=True)
    assert out + done == whole and buffer == ""


# ------------------------------------------------------------------ the publisher


def new_metrics() -> OrchestratorMetrics:
    return OrchestratorMetrics(AppMetrics("llm_orchestrator", process_collectors=False))


def metric(metrics: OrchestratorMetrics, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in metrics.registry.exposition_registry().collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class Subscriber:
    """A real subscriber of one answer's channel (subscribed before the turn starts: pub/sub keeps
    nothing for latecomers)."""

    def __init__(self, redis_url: str, message_id: uuid.UUID | str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
        self.pubsub.subscribe(channel_of(message_id))
        first = self.pubsub.get_message(timeout=2)
        assert first is not None and first["type"] == "subscribe"

    def read(self, *, until_end: bool = True, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The stream's messages as received (until ``end``; or until quiet)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                msg = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if msg is None:
                    if not until_end:
                        break
                    continue
                out.append(json.loads(msg["data"]))
                if out[-1]["type"] == "end":
                    break
        finally:
            self.pubsub.close()
            self.client.close()
        return out


def test_publisher_sends_sentences_reset_and_end_in_order(redis_url: str) -> None:
    message_id = uuid.uuid4()
    sub = Subscriber(redis_url, message_id)
    metrics = new_metrics()

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        stream = SentenceStream(client, message_id, metrics)
        for piece in ("  First one. Sec", "ond one! Thi"):
            stream.text(piece)
        stream.reset()  # the provider failed after two sentences
        stream.reset()  # a second failure with nothing sent: no second reset
        for piece in ("Again. ", "Done"):
            stream.text(piece)
        stream.finish()
        await stream.end()
        await client.aclose()

    asyncio.run(scenario())
    got = sub.read()
    assert got == [
        {"type": "sentence", "seq": 0, "text": "First one."},
        {"type": "sentence", "seq": 1, "text": " Second one!"},
        {"type": "reset", "seq": 2},
        {"type": "sentence", "seq": 3, "text": "Again."},
        {"type": "sentence", "seq": 4, "text": " Done"},
        {"type": "end", "seq": 5, "assistant_message_id": str(message_id)},
    ]
    assert metric(metrics, "llm_orchestrator_stream_messages_total", type="sentence") == 4
    assert metric(metrics, "llm_orchestrator_stream_messages_total", type="reset") == 1


def test_redis_down_is_counted_and_never_raises() -> None:
    """Nothing listens on the port: the first publish fails, the stream is dropped and counted,
    ``end`` returns within its bound."""
    metrics = new_metrics()
    message_id = uuid.uuid4()

    async def scenario() -> float:
        client = aioredis.Redis.from_url(
            f"redis://127.0.0.1:{free_port()}/11", socket_connect_timeout=0.2, socket_timeout=0.2
        )
        stream = SentenceStream(client, message_id, metrics, publish_timeout_s=0.3)
        stream.text("One. Two. Three. ")
        stream.finish()
        started = time.monotonic()
        await stream.end()
        await client.aclose()
        return time.monotonic() - started

    asyncio.run(scenario())
    assert metric(metrics, "llm_orchestrator_stream_publish_errors_total") == 1
    assert metric(metrics, "llm_orchestrator_stream_dropped_total") == 4  # 3 sentences + end
    assert metric(metrics, "llm_orchestrator_stream_messages_total") == 0


def test_abort_after_sentences_resets_and_abort_after_end_is_silent(redis_url: str) -> None:
    """A turn that raises after its first sentences (the shard failed while storing: Celery retries)
    tells the subscriber to drop them; once ``end`` went out nothing more is published."""
    failed, answered = uuid.uuid4(), uuid.uuid4()
    sub_failed, sub_answered = Subscriber(redis_url, failed), Subscriber(redis_url, answered)

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        stream = SentenceStream(client, failed, new_metrics())
        stream.text("One. Two ")
        await stream.abort()
        done = SentenceStream(client, answered, new_metrics())
        done.text("One.")
        done.finish()
        await done.end()
        await done.abort()
        await client.aclose()

    asyncio.run(scenario())
    assert sub_failed.read(until_end=False) == [
        {"type": "sentence", "seq": 0, "text": "One."},
        {"type": "reset", "seq": 1},
    ]
    assert [m["type"] for m in sub_answered.read(until_end=False)] == ["sentence", "end"]


def test_a_disabled_stream_publishes_nothing(redis_url: str) -> None:
    message_id = uuid.uuid4()
    sub = Subscriber(redis_url, message_id)

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        stream = SentenceStream(client, message_id, new_metrics(), enabled=False)
        stream.text("One. Two. ")
        stream.finish()
        await stream.end()
        await client.aclose()

    asyncio.run(scenario())
    assert sub.read(until_end=False) == []


# ------------------------------------------------------------------ whole turns


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DialogueBed]:
    with DialogueBed(pg, redis_url, tmp_path_factory.mktemp("stream_bed")) as bed:
        yield bed


@pytest.fixture
def rt(bed: DialogueBed) -> Iterator[Runtime]:
    bed.providers.reset()  # word-by-word chunks (not instant)
    runtime = bed.runtime()
    try:
        yield runtime
    finally:
        runtime.close()
        bed.providers.reset()


def stored_reply(bed: DialogueBed, message_id: str) -> str:
    with psycopg.connect(bed.shard_dsn) as conn:
        row = conn.execute("SELECT content FROM messages WHERE id = %s", (message_id,)).fetchone()
    assert row is not None
    text: str = row[0]
    return text


def sentences_after_last_reset(messages: list[dict[str, Any]]) -> list[str]:
    last = max((i for i, m in enumerate(messages) if m["type"] == "reset"), default=-1)
    return [m["text"] for m in messages[last + 1 :] if m["type"] == "sentence"]


def test_a_turn_streams_sentences_that_join_to_the_stored_reply(
    bed: DialogueBed, rt: Runtime, redis_url: str
) -> None:
    answer = "Navy works well for a date. Try a linen shirt, e.g. in white! Shall I show you 3.5 more?"
    for provider in ("deepseek", "gemini", "claude", "qwen"):
        bed.providers.answer[provider] = answer
    ids = new_ids()
    sub = Subscriber(bed.env()["CELERY_BROKER_URL"], ids["assistant_message_id"])
    result = rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "What to wear?", **ids}))
    got = sub.read()
    assert [m["seq"] for m in got] == list(range(len(got)))
    assert got[-1] == {
        "type": "end",
        "seq": len(got) - 1,
        "assistant_message_id": ids["assistant_message_id"],
    }
    texts = [m["text"] for m in got if m["type"] == "sentence"]
    assert texts == [
        "Navy works well for a date.",
        " Try a linen shirt, e.g. in white!",
        " Shall I show you 3.5 more?",
    ]
    assert "".join(texts) == result["text"] == stored_reply(bed, ids["assistant_message_id"])
    assert not any(m["type"] == "reset" for m in got)


def test_the_first_sentence_goes_out_while_the_provider_is_still_streaming(
    bed: DialogueBed, rt: Runtime
) -> None:
    """The provider trickles its words 0.2 s apart: the subscriber has the first sentence before the
    turn returns (an order, not a speed)."""
    answer = "First sentence is short. " + " ".join(f"word{i}" for i in range(12)) + "."
    bed.providers.answer["deepseek"] = answer
    bed.providers.fault("deepseek", "trickle", interval_s=0.2)
    ids = new_ids()
    sub = Subscriber(bed.env()["CELERY_BROKER_URL"], ids["assistant_message_id"])
    first_at: list[float] = []

    def watch() -> None:
        msg = sub.pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
        first_at.append(time.monotonic())
        assert msg is not None and json.loads(msg["data"])["text"] == "First sentence is short."

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "Hi", **ids}))
    returned_at = time.monotonic()
    watcher.join(timeout=30)
    assert result["text"] == answer
    assert first_at and first_at[0] < returned_at
    rest = sub.read()
    assert (
        "".join(["First sentence is short."] + [m["text"] for m in rest if m["type"] == "sentence"]) == answer
    )


def test_a_provider_failing_mid_stream_resets_and_the_next_one_streams(bed: DialogueBed, rt: Runtime) -> None:
    """DeepSeek streams its whole text, then the stream breaks before its end marker: its sentences
    went out, so a ``reset`` follows and Gemini's answer is streamed and stored."""
    bed.providers.answer["deepseek"] = "This answer breaks. It never finishes. Really."
    bed.providers.answer["gemini"] = "Second try here. A clean answer."
    bed.providers.fault("deepseek", "broken_stream")
    ids = new_ids()
    sub = Subscriber(bed.env()["CELERY_BROKER_URL"], ids["assistant_message_id"])
    result = rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "Hello", **ids}))
    got = sub.read()
    kinds = [m["type"] for m in got]
    assert kinds.count("reset") == 1 and kinds[-1] == "end"
    before = [m["text"] for m in got[: kinds.index("reset")] if m["type"] == "sentence"]
    assert before and "".join(before).startswith("This answer breaks.")
    after = sentences_after_last_reset(got)
    assert result["model_used"].startswith("gemini")
    assert (
        "".join(after) == "Second try here. A clean answer." == stored_reply(bed, ids["assistant_message_id"])
    )
    assert [m["seq"] for m in got] == list(range(len(got)))


def test_every_provider_down_streams_the_graceful_answer(bed: DialogueBed, rt: Runtime) -> None:
    for provider in ("deepseek", "gemini", "claude", "qwen"):
        bed.providers.fault(provider, "error500")
    ids = new_ids()
    sub = Subscriber(bed.env()["CELERY_BROKER_URL"], ids["assistant_message_id"])
    result = rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "Hello there", **ids}))
    got = sub.read()
    assert result["failed"] is True
    assert (
        "".join(sentences_after_last_reset(got))
        == result["text"]
        == stored_reply(bed, ids["assistant_message_id"])
    )
    assert got[-1]["type"] == "end"


def test_the_broker_redis_down_for_publishing_never_fails_the_turn(bed: DialogueBed, rt: Runtime) -> None:
    """The runtime's Redis client is swapped for one on a closed port just for the stream (the turn's
    other Redis uses degrade on their own): the answer is stored, the publish error counted."""
    dead = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/11", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    live = rt.redis
    rt.redis = dead
    try:
        ids = new_ids()
        result = rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "Hi!", **ids}))
    finally:
        rt.redis = live
        rt.run(dead.aclose())
    assert result["text"] == stored_reply(bed, ids["assistant_message_id"])
    assert metric(rt.metrics, "llm_orchestrator_stream_publish_errors_total") == 1

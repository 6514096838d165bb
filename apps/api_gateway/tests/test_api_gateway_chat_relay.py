"""The chat route's producer side against a real Redis broker, with this test playing the
orchestrator's worker (it takes the task message off the queue and publishes what the real one
publishes): the SSE relay (sentence/reset in order, then done), the JSON answer, a retry that
follows the stored result instead of sending again, a rejected turn (422), 503 + Retry-After on a
saturated queue and past the deadline (the retry then gets the answer), 422 naming bad fields.
The full turn through the real orchestrator is test_api_gateway_chat.py."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api_gateway.app import create
from api_gateway.auth import issue_tokens
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.gateway_testbed import gateway_settings
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(120)

Worker = Callable[[dict[str, Any], redis.Redis], None]


@pytest.fixture(scope="module")
def dbs(pg: PostgresHandle) -> tuple[str, str]:
    return migrate_database(pg, "gw_chat_main", "unde_main"), migrate_database(
        pg, "gw_chat_shard", "unde_shard"
    )


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/11")


def settings_of(dbs: tuple[str, str], redis_url: str, queue: str, **overrides: str) -> ApiGatewaySettings:
    return gateway_settings(dbs[0], dbs[1], redis_url, DIALOGUE_QUEUE=queue, **overrides)


def new_turn(message: str = "What goes with a linen shirt?") -> dict[str, Any]:
    return {
        "message": message,
        "user_message_id": str(uuid.uuid4()),
        "assistant_message_id": str(uuid.uuid4()),
        "location": {"lat": 25.2, "lng": 55.27, "mall_id": "dubai-mall"},
    }


def task_of(raw: bytes | str) -> dict[str, Any]:
    """A kombu message of the Redis transport → task id, name, kwargs."""
    message = json.loads(raw)
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return {
        "id": message["headers"]["id"],
        "task": message["headers"]["task"],
        "args": args,
        "kwargs": kwargs,
    }


def store_result(broker: redis.Redis, task_id: str, status: str, result: Any) -> None:
    """What Celery's Redis backend does: SET the meta, PUBLISH it on the key's name."""
    key = f"celery-task-meta-{task_id}"
    meta = json.dumps({"status": status, "result": result, "task_id": task_id, "traceback": None})
    broker.set(key, meta, ex=3600)
    broker.publish(key, meta)


def answer_for(task: dict[str, Any], text: str) -> dict[str, Any]:
    kw = task["kwargs"]
    return {
        "text": text,
        "voice_params": {"speed": 1.0},
        "avatar_state": "smile",
        "render_hints": {"cards": []},
        "intent": "fashion",
        "conversation_id": str(uuid.uuid4()),
        "user_message_id": kw["user_message_id"],
        "assistant_message_id": kw["assistant_message_id"],
        "reply_to_id": None,
        "degraded": [],
        "failed": False,
        "duration_ms": 12.5,
        "timings_ms": {"context_pack": 1.0},
        "model_used": "stand-in",
    }


@pytest.fixture
def fake_worker(broker: redis.Redis) -> Iterator[Callable[[str, Worker], list[dict[str, Any]]]]:
    """Start a thread that takes tasks off ``queue`` and runs ``handle(task, broker)`` on each;
    returns the list of tasks it took."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(queue: str, handle: Worker) -> list[dict[str, Any]]:
        broker.delete(queue)
        taken: list[dict[str, Any]] = []

        def loop() -> None:
            while not stop.is_set():
                item = broker.brpop([queue], timeout=0.2)
                if item is None:
                    continue
                task = task_of(item[1])
                taken.append(task)
                handle(task, broker)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)
        return taken

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def headers_for(settings: ApiGatewaySettings, user: uuid.UUID, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_tokens(settings, user, 0)['access_token']}", **extra}


def test_sse_relays_sentences_and_resets_in_order_then_done(
    dbs: tuple[str, str], redis_url: str, fake_worker: Callable[[str, Worker], list[dict[str, Any]]]
) -> None:
    def handle(task: dict[str, Any], broker: redis.Redis) -> None:
        channel = f"orch:stream:{task['kwargs']['assistant_message_id']}"
        for message in (
            {"type": "sentence", "seq": 0, "text": "Try white sneakers."},
            {"type": "reset", "seq": 1},
            {"type": "sentence", "seq": 2, "text": "A navy blazer works."},
            {"type": "sentence", "seq": 3, "text": " So do loafers."},
            {"type": "end", "seq": 4, "assistant_message_id": task["kwargs"]["assistant_message_id"]},
        ):
            broker.publish(channel, json.dumps(message))
        store_result(broker, task["id"], "SUCCESS", answer_for(task, "A navy blazer works. So do loafers."))

    taken = fake_worker("gwtest_sse", handle)
    settings = settings_of(dbs, redis_url, "gwtest_sse")
    user = uuid.uuid4()
    turn = new_turn()
    with TestClient(create(settings)) as c:
        headers = headers_for(settings, user, Accept="text/event-stream")
        with c.stream("POST", "/api/v1/chat", json=turn, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            body = "".join(r.iter_text())
    events = sse_events(body)
    assert [e[0] for e in events] == ["sentence", "reset", "sentence", "sentence", "done"]
    assert events[0][1] == {"seq": 0, "text": "Try white sneakers."}
    assert events[1][1] == {"seq": 1}
    done = events[-1][1]
    assert done["text"] == "A navy blazer works. So do loafers."
    assert done["assistant_message_id"] == turn["assistant_message_id"]
    assert "timings_ms" not in done and "model_used" not in done  # internals stay inside
    # what the orchestrator got: the user from the token, the client's ids, the position
    (task,) = taken
    assert task["task"] == "llm_orchestrator.generate_response"
    kw = task["kwargs"]
    assert kw["user_id"] == str(user) and kw["user_message_id"] == turn["user_message_id"]
    assert kw["location"] == {"lat": 25.2, "lng": 55.27, "mall_id": "dubai-mall"}
    assert kw["input_type"] == "text" and kw["explicit_reply_to"] is None


def test_json_answer_and_a_retry_follows_the_stored_result(
    dbs: tuple[str, str], redis_url: str, fake_worker: Callable[[str, Worker], list[dict[str, Any]]]
) -> None:
    def handle(task: dict[str, Any], broker: redis.Redis) -> None:
        store_result(broker, task["id"], "SUCCESS", answer_for(task, "Beige chinos."))

    taken = fake_worker("gwtest_json", handle)
    settings = settings_of(dbs, redis_url, "gwtest_json")
    user = uuid.uuid4()
    turn = {**new_turn(), "input_type": "voice", "reply_to": str(uuid.uuid4())}
    with TestClient(create(settings)) as c:
        first = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, user))
        again = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, user))
        # the same message ids of another user are another turn
        other = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, uuid.uuid4()))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["text"] == "Beige chinos." and body["voice_params"] == {"speed": 1.0}
    assert body["avatar_state"] == "smile" and body["render_hints"] == {"cards": []}
    assert again.json() == body
    assert other.status_code == 200
    assert len(taken) == 2  # the retry sent nothing
    assert taken[0]["kwargs"]["input_type"] == "voice"
    assert taken[0]["kwargs"]["explicit_reply_to"] == turn["reply_to"]


def test_a_rejected_turn_is_422_with_the_reason(
    dbs: tuple[str, str], redis_url: str, fake_worker: Callable[[str, Worker], list[dict[str, Any]]]
) -> None:
    def handle(task: dict[str, Any], broker: redis.Redis) -> None:
        failure = {
            "exc_type": "TurnRejectedError",
            "exc_message": ["conversation_id is not this user's conversation"],
            "exc_module": "llm_orchestrator.dialogue",
        }
        store_result(broker, task["id"], "FAILURE", failure)

    taken = fake_worker("gwtest_rejected", handle)
    settings = settings_of(dbs, redis_url, "gwtest_rejected")
    user = uuid.uuid4()
    turn = {**new_turn(), "conversation_id": str(uuid.uuid4())}
    with TestClient(create(settings)) as c:
        r = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, user))
        again = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, user))
        fixed = c.post(
            "/api/v1/chat", json={**turn, "conversation_id": None}, headers=headers_for(settings, user)
        )
    assert r.status_code == 422
    assert r.json() == {"error": "rejected", "detail": "conversation_id is not this user's conversation"}
    assert again.json() == r.json()
    # the same message again is not run again; the corrected one is a new run
    assert len(taken) == 2 and taken[1]["kwargs"]["conversation_id"] is None
    assert fixed.status_code == 422  # (this stand-in rejects everything)


def test_saturated_queue_is_503_with_retry_after_and_sends_nothing(
    dbs: tuple[str, str], redis_url: str, broker: redis.Redis
) -> None:
    queue = "gwtest_saturated"
    broker.delete(queue)
    broker.lpush(queue, *[b"queued"] * 3)
    settings = settings_of(dbs, redis_url, queue, DIALOGUE_MAX_QUEUED="3", DIALOGUE_RETRY_AFTER_S="7")
    with TestClient(create(settings)) as c:
        r = c.post("/api/v1/chat", json=new_turn(), headers=headers_for(settings, uuid.uuid4()))
        sse = c.post(
            "/api/v1/chat",
            json=new_turn(),
            headers=headers_for(settings, uuid.uuid4(), Accept="text/event-stream"),
        )
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert r.json()["error"] == "dialogue_unavailable" and "queued" in r.json()["detail"]
    assert sse.status_code == 503  # refused before the stream starts: a plain HTTP answer
    assert broker.llen(queue) == 3
    broker.delete(queue)


def test_deadline_is_503_and_the_retry_gets_the_answer(
    dbs: tuple[str, str],
    redis_url: str,
    broker: redis.Redis,
    fake_worker: Callable[[str, Worker], list[dict[str, Any]]],
) -> None:
    """Nobody takes the first task before the deadline: 503 + Retry-After, and the task expires
    unrun. The client's retry (same ids) after the deadline sends a new task; a worker answers it."""
    queue = "gwtest_deadline"
    broker.delete(queue)
    settings = settings_of(dbs, redis_url, queue, DIALOGUE_DEADLINE_S="0.5", DIALOGUE_RETRY_AFTER_S="2")
    user = uuid.uuid4()
    turn = new_turn()
    with TestClient(create(settings)) as c:
        late = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, user))
        assert late.status_code == 503 and late.headers["retry-after"] == "2"
        assert "0.5 s" in late.json()["detail"]
        (stale,) = [task_of(raw) for raw in broker.lrange(queue, 0, -1)]
        broker.delete(queue)

        def handle(task: dict[str, Any], broker: redis.Redis) -> None:
            store_result(broker, task["id"], "SUCCESS", answer_for(task, "Here you go."))

        taken = fake_worker(queue, handle)
        retry = c.post("/api/v1/chat", json=turn, headers=headers_for(settings, user))
    assert retry.status_code == 200, retry.text
    assert retry.json()["text"] == "Here you go."
    assert taken[0]["id"] != stale["id"] and taken[0]["kwargs"] == stale["kwargs"]


def test_sse_deadline_after_the_first_sentence_is_an_error_event(
    dbs: tuple[str, str], redis_url: str, fake_worker: Callable[[str, Worker], list[dict[str, Any]]]
) -> None:
    def handle(task: dict[str, Any], broker: redis.Redis) -> None:
        channel = f"orch:stream:{task['kwargs']['assistant_message_id']}"
        broker.publish(channel, json.dumps({"type": "sentence", "seq": 0, "text": "Let me think."}))

    fake_worker("gwtest_sse_late", handle)
    settings = settings_of(dbs, redis_url, "gwtest_sse_late", DIALOGUE_DEADLINE_S="1", SSE_KEEPALIVE_S="0.2")
    with TestClient(create(settings)) as c:
        headers = headers_for(settings, uuid.uuid4(), Accept="text/event-stream")
        with c.stream("POST", "/api/v1/chat", json=new_turn(), headers=headers) as r:
            body = "".join(r.iter_text())
    events = sse_events(body)
    assert [e[0] for e in events] == ["sentence", "error"]
    assert events[1][1]["error"] == "dialogue_unavailable" and events[1][1]["retry_after_s"] == 3
    assert ": keepalive" in body


def test_bad_fields_are_422_naming_them(dbs: tuple[str, str], redis_url: str) -> None:
    settings = settings_of(dbs, redis_url, "gwtest_unused")
    cases = {
        ("body", "user_message_id"): {**new_turn(), "user_message_id": "not-a-uuid"},
        ("body", "location", "lat"): {**new_turn(), "location": {"lat": "north", "lng": 1}},
        ("body", "message"): {**new_turn(), "message": 5},
        ("body", "input_type"): {**new_turn(), "input_type": "telepathy"},
        ("body", "assistant_message_id"): {
            k: v for k, v in new_turn().items() if k != "assistant_message_id"
        },
        ("body", "user_id"): {**new_turn(), "user_id": str(uuid.uuid4())},  # the user comes from the token
    }
    with TestClient(create(settings)) as c:
        for loc, body in cases.items():
            r = c.post("/api/v1/chat", json=body, headers=headers_for(settings, uuid.uuid4()))
            assert r.status_code == 422, (loc, r.text)
            assert tuple(r.json()["detail"][0]["loc"]) == loc, (loc, r.text)
        same = new_turn()
        same["assistant_message_id"] = same["user_message_id"]
        r = c.post("/api/v1/chat", json=same, headers=headers_for(settings, uuid.uuid4()))
        assert r.status_code == 422 and "must differ" in r.text
        photo = c.post(
            "/api/v1/chat",
            json={**new_turn(), "photo_id": str(uuid.uuid4())},
            headers=headers_for(settings, uuid.uuid4()),
        )
        assert photo.status_code in (404, 422) and "photo_id" in photo.json()["detail"]


def test_a_client_leaving_mid_stream_drops_the_subscriptions(
    dbs: tuple[str, str],
    redis_url: str,
    broker: redis.Redis,
    fake_worker: Callable[[str, Worker], list[dict[str, Any]]],
) -> None:
    release = threading.Event()

    def handle(task: dict[str, Any], broker: redis.Redis) -> None:
        channel = f"orch:stream:{task['kwargs']['assistant_message_id']}"
        broker.publish(channel, json.dumps({"type": "sentence", "seq": 0, "text": "One moment."}))
        release.wait(timeout=30)
        store_result(broker, task["id"], "SUCCESS", answer_for(task, "One moment. Done."))

    taken = fake_worker("gwtest_leave", handle)
    settings = settings_of(dbs, redis_url, "gwtest_leave", SSE_KEEPALIVE_S="0.1")
    turn = new_turn()
    channel = f"orch:stream:{turn['assistant_message_id']}"
    with TestClient(create(settings)) as c:
        headers = headers_for(settings, uuid.uuid4(), Accept="text/event-stream")
        with c.stream("POST", "/api/v1/chat", json=turn, headers=headers) as r:
            first = next(r.iter_lines())
            assert first == "event: sentence"
            assert dict(broker.pubsub_numsub(channel))[channel.encode()] == 1
        deadline = time.monotonic() + 10
        while dict(broker.pubsub_numsub(channel))[channel.encode()] != 0:
            assert time.monotonic() < deadline, "the gateway still listens to a stream nobody reads"
            time.sleep(0.05)
        release.set()
        # the turn itself goes on; the client's replay gets the stored answer
        again = c.post(
            "/api/v1/chat", json=turn, headers=headers_for(settings, uuid.UUID(taken[0]["kwargs"]["user_id"]))
        )
    assert again.status_code == 200 and again.json()["text"] == "One moment. Done."
    assert len(taken) == 1

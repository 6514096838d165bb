"""The user's requests about their data (forget, hard delete, account erase, profile) on the dialogue test
bed: real shard and production databases, Redis, the bed's key ring; a Runtime in this process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from llm_orchestrator import account
from llm_orchestrator.account import AccountRejectedError, ConversationNotOwnedError, MessageNotFoundError
from llm_orchestrator.runtime import Runtime
from unde_testkit.dialogue_testbed import DialogueBed, PlantedMemory
from unde_testkit.testing import PostgresHandle


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DialogueBed]:
    with DialogueBed(pg, redis_url, tmp_path_factory.mktemp("account_bed")) as bed:
        yield bed


@pytest.fixture
def rt(bed: DialogueBed) -> Iterator[Runtime]:
    runtime = bed.runtime()
    try:
        yield runtime
    finally:
        runtime.close()


def one(bed: DialogueBed, query: str, *params: Any) -> tuple[Any, ...] | None:
    with psycopg.connect(bed.shard_dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()


def message(bed: DialogueBed, message_id: uuid.UUID) -> tuple[Any, ...] | None:
    """(content, is_forgotten, embedding IS NULL, memory_snippet, response_description, deleted_at)."""
    return one(
        bed,
        "SELECT content, is_forgotten, embedding IS NULL, memory_snippet, response_description,"
        " deleted_at FROM messages WHERE id = %s",
        message_id,
    )


def active_facts(bed: DialogueBed, user_id: uuid.UUID) -> int:
    row = one(bed, "SELECT count(*) FROM user_knowledge WHERE user_id = %s AND is_active", user_id)
    assert row is not None
    return int(row[0])


FACTS: list[tuple[str, dict[str, Any]]] = [
    ("style_profile", {"attribute": "name", "value": "Amira"}),
    ("brand_preferences", {"brand": "Zara", "sentiment": "like"}),
    ("budget", {"attribute": "tier", "value": "premium"}),
]


def test_soft_forget_of_a_message_drops_it_from_retrieval_and_its_facts(
    bed: DialogueBed, rt: Runtime
) -> None:
    user_id = uuid.uuid4()
    history = bed.seed_history(user_id, 6, planted=["My secret project is called Flamingo"])
    secret = history.planted_ids[0]
    bed.seed_knowledge(
        user_id, [("brand_preferences", {"brand": "Mango", "sentiment": "like"})], source=history
    )
    source = one(bed, "SELECT source_message_id FROM user_knowledge WHERE user_id = %s", user_id)
    assert source is not None
    first = rt.run(
        account.forget(rt, {"user_id": str(user_id), "mode": "soft", "message_id": str(source[0])})
    )
    assert first["found"] and first["changed"] and first["knowledge_deactivated"] == 1
    assert active_facts(bed, user_id) == 0
    again = rt.run(account.forget(rt, {"user_id": str(user_id), "message_id": str(source[0])}))
    assert again["found"] and not again["changed"]
    row = message(bed, secret)
    assert row is not None and row[1] is False  # other messages untouched
    forgotten = message(bed, source[0])
    assert forgotten is not None and forgotten[1] is True and forgotten[2] is True and forgotten[3] is None
    assert forgotten[0]  # the text stays: the user still sees it


def test_soft_forget_of_a_topic_forgets_every_message_about_it(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    history = bed.seed_history(
        user_id,
        20,
        planted=[PlantedMemory("My sister Amira loves silk scarves"), PlantedMemory("Amira turns 30 in May")],
    )
    result = rt.run(account.forget(rt, {"user_id": str(user_id), "topic": "Amira"}))
    assert sorted(result["message_ids"]) == sorted(str(i) for i in history.planted_ids)
    for planted in history.planted_ids:
        row = message(bed, planted)
        assert row is not None and row[1] is True and row[3] is None
    others = one(
        bed,
        "SELECT count(*) FROM messages WHERE conversation_id = %s AND is_forgotten",
        history.conversation_id,
    )
    assert others == (2,)
    nothing = rt.run(account.forget(rt, {"user_id": str(user_id), "topic": "Amira"}))
    assert nothing["message_ids"] == [] and not nothing["changed"]


def test_forget_this_look_also_drops_the_artefact_description(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    history = bed.seed_history(user_id, 8, artifact_every=1)
    artefact = history.artifact_ids[0]
    plain = history.artifact_ids[1]
    rt.run(account.forget(rt, {"user_id": str(user_id), "message_id": str(plain)}))
    kept = message(bed, plain)
    assert kept is not None and kept[1] is True and kept[4]  # plain "forget": description stays
    rt.run(
        account.forget(rt, {"user_id": str(user_id), "message_id": str(artefact), "forget_artifact": True})
    )
    dropped = message(bed, artefact)
    assert dropped is not None and dropped[1] is True and dropped[4] is None


def test_hard_delete_blanks_the_message_and_writes_its_tombstone(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    history = bed.seed_history(user_id, 4)
    target = history.rows[0].id
    result = rt.run(account.forget(rt, {"user_id": str(user_id), "mode": "hard", "message_id": str(target)}))
    assert result["found"] and result["tombstone_written"]
    row = message(bed, target)
    assert row is not None and row[0] == "[deleted]" and row[5] is not None
    with psycopg.connect(bed.main_dsn) as conn:
        tomb = conn.execute(
            "SELECT user_id, reason FROM deleted_messages_registry WHERE message_id = %s", (target,)
        ).fetchone()
    assert tomb == (user_id, "user_request")
    again = rt.run(account.forget(rt, {"user_id": str(user_id), "mode": "hard", "message_id": str(target)}))
    assert again["found"] and not again["changed"]


def test_another_users_message_is_not_found_and_their_conversation_refused(
    bed: DialogueBed, rt: Runtime
) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    history = bed.seed_history(owner, 2)
    bed.seed_history(other, 2)
    target = str(history.rows[0].id)
    for mode in ("soft", "hard"):
        with pytest.raises(MessageNotFoundError):
            rt.run(account.forget(rt, {"user_id": str(other), "mode": mode, "message_id": target}))
    with pytest.raises(ConversationNotOwnedError):
        rt.run(
            account.forget(
                rt,
                {"user_id": str(other), "topic": "shirt", "conversation_id": str(history.conversation_id)},
            )
        )
    row = message(bed, history.rows[0].id)
    assert row is not None and row[1] is False and row[0] != "[deleted]"


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        ({"mode": "hard", "topic": "Amira"}, "message_id"),
        ({"message_id": str(uuid.uuid4()), "topic": "Amira"}, "exactly one"),
        ({}, "exactly one"),
        ({"topic": "   "}, "topic"),
        ({"mode": "later", "topic": "Amira"}, "mode"),
    ],
)
def test_bad_forget_requests_are_rejected_naming_the_field(
    rt: Runtime, request_: dict[str, Any], named: str
) -> None:
    with pytest.raises(AccountRejectedError, match=named):
        rt.run(account.forget(rt, {"user_id": str(uuid.uuid4()), **request_}))


def test_profile_shows_the_decrypted_knowledge(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    ids = bed.seed_knowledge(user_id, FACTS)
    result = rt.run(account.profile(rt, {"user_id": str(user_id)}))
    assert result["name"] == "Amira"
    assert result["profile"]["favorite_brands"] == ["Zara"]
    assert result["profile"]["budget"]["tier"] == "premium"
    assert sorted(f["id"] for f in result["facts"]) == sorted(str(i) for i in ids)
    assert {f["knowledge_type"]: f["data"] for f in result["facts"]}["brand_preferences"] == FACTS[1][1]
    assert "Имя: Amira." in result["summary"]
    assert result["unreadable_facts"] == 0
    empty = rt.run(account.profile(rt, {"user_id": str(uuid.uuid4())}))
    assert empty["facts"] == [] and empty["name"] is None


def test_erase_account_removes_the_users_data_and_a_repeat_reports_zeros(
    bed: DialogueBed, rt: Runtime
) -> None:
    user_id = uuid.uuid4()
    history = bed.seed_history(user_id, 6)
    bed.seed_knowledge(user_id, FACTS, source=history)
    rt.run(rt.remember_meta(user_id, {"length": "short"}))
    report = rt.run(account.erase_account(rt, {"user_id": str(user_id)}))
    assert report["changed"] and report["messages_deleted"] == 6 and report["tombstones_written"] == 6
    assert report["user_knowledge_deleted"] == 3 and report["user_keys_deleted"] == 1
    assert report["redis_keys_deleted"]["llm_orchestrator"] == 1
    assert "user_media" in report["not_erased"]
    assert one(bed, "SELECT count(*) FROM conversations WHERE user_id = %s", user_id) == (0,)
    assert rt.run(rt.recent_meta(user_id)) == []
    again = rt.run(account.erase_account(rt, {"user_id": str(user_id)}))
    assert not again["changed"] and again["messages_deleted"] == 0
    assert rt.run(account.profile(rt, {"user_id": str(user_id)}))["facts"] == []

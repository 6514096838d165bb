"""The dialogue test bed (unde_testkit.dialogue_testbed) itself: the agents come up as real processes on
loopback, accept the orchestrator's service token, the seeded history and knowledge are readable the
way a turn reads them, and everything is stopped when the bed closes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from llm_orchestrator.crypto import MasterKeyRing
from llm_orchestrator.knowledge import load_knowledge
from unde_testkit.dialogue_testbed import DialogueBed, PlantedMemory
from unde_testkit.service_auth import TEST_SERVICE_TOKENS
from unde_testkit.testing import PostgresHandle


def test_bed_brings_up_the_agents_and_seeds_the_shard(
    pg: PostgresHandle, redis_url: str, tmp_path: Path
) -> None:
    user_id = uuid.uuid4()
    with DialogueBed(pg, redis_url, tmp_path / "bed", shard_db="bed_shard", main_db="bed_main") as bed:
        assert bed.health() == {"mood_agent": 200, "context_agent": 200, "persona_agent": 200}
        token = TEST_SERVICE_TOKENS["llm_orchestrator"]
        analyze = bed.agent_urls["mood_agent"] + "/analyze"
        body = {"user_id": str(user_id), "text": "I love this linen shirt", "mode": "context"}
        assert httpx.post(analyze, json=body, timeout=10).status_code == 401
        answer = httpx.post(analyze, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert "emotion" in answer.json()["mood_frame"]

        settings = bed.settings()
        assert settings.service_token is not None
        assert settings.service_token.get_secret_value() == token
        assert str(settings.mood_agent_url).rstrip("/") == bed.agent_urls["mood_agent"]
        assert settings.master_key_file == bed.key_file
        env_file = bed.write_env(tmp_path / "orchestrator.env", LOG_LEVEL="DEBUG")
        assert "LOG_LEVEL=DEBUG\n" in env_file.read_text()

        planted = PlantedMemory("My sister Amira is getting married in Lisbon in May", days_ago=40)
        history = bed.seed_history(user_id, 60, planted=[planted])
        assert len(history.rows) == 60 and len(history.planted_ids) == 1 and history.artifact_ids
        ids = bed.seed_knowledge(user_id, [("budget", {"max": 200, "currency": "EUR"}, 0.9)], source=history)

        async def read() -> list[str]:
            ring = MasterKeyRing.load(bed.key_file)
            async with await psycopg.AsyncConnection.connect(bed.shard_dsn) as conn:
                knowledge = await load_knowledge(conn, user_id, ring)
            return [str(f.id) for f in knowledge.facts if f.data == {"max": 200, "currency": "EUR"}]

        assert asyncio.run(read()) == [str(i) for i in ids]
        with psycopg.connect(bed.shard_dsn) as conn:
            row = conn.execute(
                "SELECT content, enrichment_status, is_embeddable, embedding IS NOT NULL FROM messages"
                " WHERE conversation_id = %s AND id = %s",
                (history.conversation_id, history.planted_ids[0]),
            ).fetchone()
        assert row == (planted.text, "done", True, True)
        urls = list(bed.agent_urls.values())
    for url in urls:
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health/live", timeout=2)

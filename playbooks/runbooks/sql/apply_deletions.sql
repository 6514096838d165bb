-- apply_deletions: re-applies every tombstone of production unde_main.deleted_messages_registry
-- to a shard (spec 02 §14 "Hard Delete (GDPR erase)"), e.g. after the shard was restored from a
-- backup taken before some deletions. Run on the shard database with psql, the registry as CSV
-- (conversation_id,message_id,deleted_at) on psql's stdin:
--   psql -X -v ON_ERROR_STOP=1 -d unde_shard -f apply_deletions.sql < tombstones.csv
-- Idempotent: a message already erased is not touched again (its deleted_at is kept); the
-- counters say what this run changed. One transaction: all or nothing.
-- Per tombstone (conversation_id, message_id), exactly the spec's hard delete:
--   DELETE FROM user_knowledge WHERE source_message_id = message_id;
--   UPDATE messages SET content = '[deleted]', embedding, memory_snippet, memory_confidence,
--     response_description, reply_to_id = NULL, is_forgotten = TRUE, deleted_at = <registry's>
-- (tsv is a generated column: it follows content.)
\set ON_ERROR_STOP 1
\pset footer off
BEGIN;

CREATE TEMP TABLE unde_tombstones (
    conversation_id uuid        NOT NULL,
    message_id      uuid        NOT NULL,
    deleted_at      timestamptz NOT NULL
) ON COMMIT DROP;

\copy unde_tombstones (conversation_id, message_id, deleted_at) FROM pstdin WITH (FORMAT csv)

-- One row per message (the registry's primary key already says so; a hand-made file may not).
CREATE TEMP TABLE unde_tomb ON COMMIT DROP AS
SELECT conversation_id, message_id, min(deleted_at) AS deleted_at
FROM unde_tombstones GROUP BY conversation_id, message_id;
ALTER TABLE unde_tomb ADD PRIMARY KEY (conversation_id, message_id);
ANALYZE unde_tomb;

CREATE TEMP TABLE unde_apply_counts ON COMMIT DROP AS
WITH knowledge AS (
    DELETE FROM user_knowledge uk
    USING unde_tomb t
    WHERE uk.source_message_id = t.message_id
      AND (uk.source_conversation_id IS NULL OR uk.source_conversation_id = t.conversation_id)
    RETURNING 1
), erased AS (
    UPDATE messages m SET
        content = '[deleted]',
        embedding = NULL,
        memory_snippet = NULL,
        memory_confidence = NULL,
        response_description = NULL,
        reply_to_id = NULL,
        is_forgotten = TRUE,
        deleted_at = COALESCE(m.deleted_at, t.deleted_at)
    FROM unde_tomb t
    WHERE m.conversation_id = t.conversation_id AND m.id = t.message_id
      AND (m.content IS DISTINCT FROM '[deleted]'
           OR m.embedding IS NOT NULL
           OR m.memory_snippet IS NOT NULL
           OR m.memory_confidence IS NOT NULL
           OR m.response_description IS NOT NULL
           OR m.reply_to_id IS NOT NULL
           OR NOT m.is_forgotten
           OR m.deleted_at IS NULL)
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM unde_tomb) AS tombstones,
    (SELECT count(*) FROM messages m JOIN unde_tomb t
        ON m.conversation_id = t.conversation_id AND m.id = t.message_id) AS on_shard,
    (SELECT count(*) FROM erased) AS erased_now,
    (SELECT count(*) FROM knowledge) AS knowledge_deleted;

-- After the changes (same transaction): a tombstoned message that is still readable, or knowledge
-- still derived from one, is a failure of this script.
SELECT
    'apply_deletions'
    || ' tombstones=' || c.tombstones
    || ' on_shard=' || c.on_shard
    || ' not_on_shard=' || (c.tombstones - c.on_shard)
    || ' erased_now=' || c.erased_now
    || ' already_erased=' || (c.on_shard - c.erased_now)
    || ' knowledge_deleted=' || c.knowledge_deleted
    || ' still_readable=' || (
        SELECT count(*) FROM messages m JOIN unde_tomb t
            ON m.conversation_id = t.conversation_id AND m.id = t.message_id
        WHERE m.content <> '[deleted]' OR m.embedding IS NOT NULL OR m.memory_snippet IS NOT NULL
           OR m.response_description IS NOT NULL OR NOT m.is_forgotten)
    || ' knowledge_left=' || (
        SELECT count(*) FROM user_knowledge uk JOIN unde_tomb t ON uk.source_message_id = t.message_id
        WHERE uk.source_conversation_id IS NULL OR uk.source_conversation_id = t.conversation_id)
    AS result
FROM unde_apply_counts c
\gset
\echo :result
SELECT (:'result' NOT LIKE '% still_readable=0 knowledge_left=0') AS unde_failed \gset
\if :unde_failed
DO $$ BEGIN RAISE EXCEPTION 'apply_deletions: tombstoned data is still readable; rolled back'; END $$;
\endif
COMMIT;

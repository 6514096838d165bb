-- The tombstone registry of production (unde_main.deleted_messages_registry) as CSV on stdout:
-- conversation_id,message_id,deleted_at (UTC, ISO 8601), oldest first. Input of apply_deletions.sql.
\set ON_ERROR_STOP 1
SET TIME ZONE 'UTC';
\copy (SELECT conversation_id, message_id, deleted_at FROM deleted_messages_registry ORDER BY deleted_at, conversation_id, message_id) TO pstdout WITH (FORMAT csv)

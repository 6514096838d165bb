-- Persona Agent: the exchanges whose buffered signals a /persona/flush applied, written in the SAME
-- transaction as the state change (spec 02 §16 idempotency, on the shard). A flush retried after a
-- crash between that commit and the Redis idempotency write finds its row here and answers the
-- stored result without applying the signals again. Stale exchanges flushed along with it get a
-- row too (applied_with = the flushed exchange, result NULL), so no later flush applies them again.
-- Rows older than 72 h (the Redis idempotency TTL) are removed by the daily 04:00 cleanup.
CREATE TABLE persona_applied_flushes (
    user_id      uuid         NOT NULL,
    exchange_id  varchar(100) NOT NULL,
    applied_with varchar(100) NOT NULL,
    result       jsonb,
    applied_at   timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, exchange_id),
    CONSTRAINT persona_applied_flushes_result_object CHECK (result IS NULL OR jsonb_typeof(result) = 'object')
);
CREATE INDEX idx_persona_applied_flushes_applied_at ON persona_applied_flushes (applied_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON persona_applied_flushes TO unde_shard_persona_rw, unde_shard_app_rw;
GRANT SELECT ON persona_applied_flushes TO unde_shard_readonly;

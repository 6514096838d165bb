-- LLM orchestrator: what each assistant reply used, so the next turns can keep the memory density
-- cap (spec 02 §13: <= 3 episodes per answer, <= 30 % of the last 10 answers with memories) and so
-- a failed turn is visible in the history.
--   memory_refs   assistant rows: how many episode cards the reply's ContextPack carried (0 = none);
--                 NULL on user rows and on rows written before this column existed
--   turn_status   assistant rows: 'ok' | 'degraded' (an agent, the catalog or a provider fell back)
--                 | 'failed' (every LLM provider failed; the text is the graceful template answer)
ALTER TABLE messages ADD COLUMN memory_refs smallint;
ALTER TABLE messages ADD COLUMN turn_status varchar(20);
ALTER TABLE messages ADD CONSTRAINT messages_memory_refs_check CHECK (memory_refs >= 0);
ALTER TABLE messages ADD CONSTRAINT messages_turn_status_check
    CHECK (turn_status IN ('ok', 'degraded', 'failed'));

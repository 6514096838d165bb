-- unde_shard (every local-shard-N): Chat History (spec 02 §14), plus the columns the schedule
-- needs (spec 01: enrichment_ttl_recovery every 6 h, retry < 3).
-- Applied by unde_sql_migrate in one transaction: no BEGIN/COMMIT here.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE FUNCTION public.unde_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.unde_set_updated_at() FROM PUBLIC;

-- One continuous dialogue per user.
CREATE TABLE conversations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    message_count integer     NOT NULL DEFAULT 0,
    CONSTRAINT conversations_user_id_key UNIQUE (user_id)
);
-- The UNIQUE (user_id) constraint is the user index (spec's idx_conversations_user would
-- duplicate it).

-- Messages, HASH-partitioned by conversation_id into 64 partitions: every query names one
-- conversation, so it touches one partition. A message is identified by the pair
-- (conversation_id, id) everywhere (UI, tombstones, logs, API); id is client-generated so
-- verify-and-replay can INSERT ... ON CONFLICT DO NOTHING.
CREATE TABLE messages (
    id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    conversation_id      uuid        NOT NULL,

    role                 varchar(20) NOT NULL,           -- user | assistant | system
    content              text        NOT NULL,           -- '[deleted]' after a hard delete

    -- Semantic search. dim 1024 = Cohere/Voyage; changing provider = ALTER TYPE + re-embed.
    embedding            vector(1024),
    is_embeddable        boolean     NOT NULL DEFAULT false,
    is_forgotten         boolean     NOT NULL DEFAULT false,  -- soft forget / hard delete

    -- Memory classification (type + confidence -> decay rate).
    memory_type          varchar(20) DEFAULT 'general',  -- emotion|preference|fact|event|general
    memory_confidence    double precision DEFAULT 0.5,    -- NULL after a hard delete
    memory_snippet       text,                            -- precomputed episode card
    response_description text,                            -- backend-only artefact description
    reply_to_id          uuid,                            -- assistant message this reacts to

    -- Full text: 'simple' config = exact tokens (names, brands, numbers); semantics via embeddings.
    tsv                  tsvector GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig, content || ' ' || COALESCE(response_description, ''))
    ) STORED,

    -- Async enrichment (embedding, memory_type, snippet). The 6-hourly enrichment_ttl_recovery
    -- takes user messages still 'pending' after 1 h with enrichment_attempts < 3 (LIMIT 500),
    -- increments enrichment_attempts per try, sets 'failed' after the third.
    enrichment_status    varchar(20) NOT NULL DEFAULT 'pending',
    enrichment_attempts  smallint    NOT NULL DEFAULT 0,
    enriched_at          timestamptz,
    enrichment_error     text,

    -- Metadata
    media_urls           jsonb,
    mood_frame           jsonb,
    input_type           varchar(20),                     -- voice | text
    duration_ms          integer,
    model_used           varchar(100),

    -- GDPR
    deleted_at           timestamptz,

    created_at           timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT messages_pkey PRIMARY KEY (conversation_id, id),
    CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'system')),
    CONSTRAINT messages_memory_type_check
        CHECK (memory_type IN ('emotion', 'preference', 'fact', 'event', 'general')),
    CONSTRAINT messages_memory_confidence_check CHECK (memory_confidence BETWEEN 0 AND 1),
    CONSTRAINT messages_enrichment_status_check
        CHECK (enrichment_status IN ('pending', 'done', 'failed', 'skipped')),
    CONSTRAINT messages_enrichment_attempts_check CHECK (enrichment_attempts >= 0)
) PARTITION BY HASH (conversation_id);

DO $$
BEGIN
    FOR i IN 0..63 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF messages FOR VALUES WITH (MODULUS 64, REMAINDER %s)',
            'messages_p' || lpad(i::text, 2, '0'), i
        );
    END LOOP;
END
$$;

-- Embeddings stay in the heap row (MAIN: compressible, out-of-line only as a last resort)
-- instead of pgvector's default EXTERNAL TOAST storage: the exact vector branch reads every
-- embedding of one conversation, and inline vectors avoid a TOAST index lookup + 3 chunk reads
-- per row (measured 3x faster for a 3,000-message conversation; bench/README.md).
ALTER TABLE messages ALTER COLUMN embedding SET STORAGE MAIN;

-- No HNSW index on messages (the spec's idx_messages_embedding): every search is inside one
-- conversation, where an HNSW scan of the partition (~12 conversations) returns the partition's
-- nearest rows and the conversation filter runs afterwards (recall@20 ~0.2), and the index
-- would more than double the vector memory. The vector branch is an exact scan instead.
-- See files/sql/README.md "Hybrid search".

-- Retrieval within one conversation (the canonical hybrid search, queries/hybrid_search.sql):
-- the vector branch reads the conversation's embeddable user messages through this index and
-- ranks them by exact cosine distance (recall 1.0). On the partitions it is
-- messages_pNN_conversation_id_idx.
CREATE INDEX idx_messages_retrieval
    ON messages (conversation_id)
    WHERE role = 'user' AND is_embeddable AND NOT is_forgotten AND embedding IS NOT NULL;

-- Full-text branch.
CREATE INDEX idx_messages_tsv ON messages USING gin (tsv);

-- Recent history (ContextPack), verify-and-replay.
CREATE INDEX idx_messages_conversation_time ON messages (conversation_id, created_at DESC);

-- enrichment_ttl_recovery (every 6 h): pending user messages, oldest first.
CREATE INDEX idx_messages_enrichment_pending
    ON messages (created_at)
    WHERE role = 'user' AND enrichment_status = 'pending';

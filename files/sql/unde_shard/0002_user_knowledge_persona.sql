-- unde_shard: User Knowledge (AES-256-GCM, application-level envelope encryption) and the
-- Persona Agent tables (spec 02 §14, §16), plus life_event expiry (spec 01: daily 03:00).

-- Per-user data encryption keys (DEK), each wrapped by the master key (AES-256-GCM; the blob
-- holds nonce || ciphertext || tag). master_key_version tells the master-key rotation runbook
-- which DEKs still need re-wrapping. Deleting a user's key crypto-shreds their knowledge.
CREATE TABLE user_keys (
    user_id            uuid PRIMARY KEY,
    encrypted_dek      bytea       NOT NULL,
    master_key_version integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    rotated_at         timestamptz
);

-- Knowledge about the user; every payload field is encrypted with the user's DEK.
CREATE TABLE user_knowledge (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                uuid NOT NULL REFERENCES user_keys (user_id) ON DELETE CASCADE,

    -- AES-256-GCM: ciphertext, 96-bit nonce (iv), 128-bit tag.
    encrypted_data         bytea NOT NULL,
    iv                     bytea NOT NULL,
    auth_tag               bytea NOT NULL,

    -- Plain metadata (for indexing).
    knowledge_type         varchar(50) NOT NULL,
        -- style_profile | body_params | brand_preferences | budget | life_event |
        -- behavior_patterns | emotional_patterns | color_preferences
    version                integer     NOT NULL DEFAULT 1,
    extracted_from         varchar(50),                  -- chat_pipeline | onboarding | explicit_input
    source_conversation_id uuid,                         -- with source_message_id: the message pair
    source_message_id      uuid,                         -- soft/hard forget cascades on it
    confidence             numeric(3, 2),
    is_active              boolean     NOT NULL DEFAULT true,  -- false: soft-forgotten or expired
    expires_at             timestamptz,                  -- life_event: deactivated at 03:00 after this

    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT user_knowledge_iv_check CHECK (octet_length(iv) = 12),
    CONSTRAINT user_knowledge_auth_tag_check CHECK (octet_length(auth_tag) = 16),
    CONSTRAINT user_knowledge_confidence_check CHECK (confidence BETWEEN 0 AND 1)
);
CREATE INDEX idx_knowledge_user_type ON user_knowledge (user_id, knowledge_type);
CREATE INDEX idx_knowledge_updated ON user_knowledge (updated_at DESC);
CREATE INDEX idx_knowledge_source_message ON user_knowledge (source_message_id)
    WHERE source_message_id IS NOT NULL;
-- life_event_expiry (03:00): UPDATE user_knowledge SET is_active = false
--                            WHERE is_active AND expires_at < now();
CREATE INDEX idx_knowledge_expiry ON user_knowledge (expires_at)
    WHERE is_active AND expires_at IS NOT NULL;
CREATE TRIGGER user_knowledge_set_updated_at
    BEFORE UPDATE ON user_knowledge
    FOR EACH ROW EXECUTE FUNCTION public.unde_set_updated_at();

-- Persona Agent: relationship stage (persisted state).
CREATE TABLE relationship_stage (
    user_id                uuid PRIMARY KEY,
    stage                  integer     NOT NULL DEFAULT 0 CHECK (stage BETWEEN 0 AND 3),
    stage_updated_at       timestamptz NOT NULL DEFAULT now(),
    sessions_count         integer     NOT NULL DEFAULT 0,
    total_exchanges        integer     NOT NULL DEFAULT 0,
    positive_signals_count integer     NOT NULL DEFAULT 0,
    last_active_at         timestamptz NOT NULL DEFAULT now()
);

-- Persona Agent: temporary blocks (max 20 per user, lazy + daily 04:00 cleanup).
CREATE TABLE persona_temp_blocks (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid         NOT NULL,
    key        varchar(50)  NOT NULL,                    -- cultural_ref | humor | ...
    until      timestamptz  NOT NULL,
    reason     varchar(100) NOT NULL,                    -- cultural_ref_rejected
    signal_id  uuid,
    created_at timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX idx_temp_blocks_user ON persona_temp_blocks (user_id);
CREATE INDEX idx_temp_blocks_until ON persona_temp_blocks (until);

-- Persona Agent: signal momentum per day (TTL 7 days, daily 04:00 cleanup).
CREATE TABLE signal_daily_deltas (
    user_id     uuid             NOT NULL,
    field       varchar(50)      NOT NULL,
    date        date             NOT NULL DEFAULT CURRENT_DATE,
    total_delta double precision NOT NULL DEFAULT 0,
    CONSTRAINT signal_daily_deltas_pkey PRIMARY KEY (user_id, field, date)
);
CREATE INDEX idx_signal_daily_deltas_date ON signal_daily_deltas (date);

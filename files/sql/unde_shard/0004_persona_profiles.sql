-- Persona Agent: the communication-profile values the agent learned from behavioural signals
-- (spec 02 §16 FeedbackProcessor). Only the fields a signal moved are stored (canonical names of
-- persona_contract, values 0..1); the caller's persona_profile fills the rest. contract_version
-- records the persona_contract that wrote the row (a major bump migrates or resets it).
CREATE TABLE persona_profiles (
    user_id          uuid        PRIMARY KEY,
    profile          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    contract_version varchar(20) NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT persona_profiles_profile_object CHECK (jsonb_typeof(profile) = 'object')
);

-- At most 20 temporary blocks per user: the agent keeps one row per (user, key), extending it.
CREATE UNIQUE INDEX idx_temp_blocks_user_key ON persona_temp_blocks (user_id, key);

-- Inactivity downgrades (daily 04:00 cleanup) scan by last activity.
CREATE INDEX idx_relationship_stage_last_active ON relationship_stage (last_active_at) WHERE stage > 0;

GRANT SELECT, INSERT, UPDATE, DELETE ON persona_profiles TO unde_shard_persona_rw, unde_shard_app_rw;
GRANT SELECT ON persona_profiles TO unde_shard_readonly;

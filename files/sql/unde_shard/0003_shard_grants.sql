-- unde_shard grants (spec 02 §14 "Пользователи БД"). Privileges go to NOLOGIN group roles named
-- unde_shard_<user>; the Ansible postgresql role creates the LOGIN users (app_rw, knowledge_rw,
-- persona_rw, readonly) and makes each a member of its group. replicator is a LOGIN REPLICATION
-- user with no group and no grants: physical replication needs no database privilege, and
-- without CONNECT (revoked from PUBLIC below) it cannot open a session on unde_shard.
-- Grants are on the partitioned parent only: the messages_pNN partitions are not reachable
-- directly by any application role.

DO $$
DECLARE
    group_role text;
BEGIN
    FOREACH group_role IN ARRAY ARRAY[
        'unde_shard_app_rw', 'unde_shard_knowledge_rw', 'unde_shard_persona_rw', 'unde_shard_readonly'
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = group_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', group_role);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), group_role);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', group_role);
    END LOOP;
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- app_rw (API gateway, LLM orchestrator incl. enrichment): READ/WRITE all.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON conversations, messages, user_keys, user_knowledge,
       relationship_stage, persona_temp_blocks, signal_daily_deltas
    TO unde_shard_app_rw;

-- knowledge_rw (knowledge pipeline, life_event_expiry at 03:00): user_knowledge + user_keys.
GRANT SELECT, INSERT, UPDATE, DELETE ON user_knowledge, user_keys TO unde_shard_knowledge_rw;

-- persona_rw (Persona Agent): its three tables; reads user_knowledge.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON relationship_stage, persona_temp_blocks, signal_daily_deltas
    TO unde_shard_persona_rw;
GRANT SELECT ON user_knowledge TO unde_shard_persona_rw;

-- readonly (diagnostics): everything except the wrapped DEKs.
GRANT SELECT
    ON conversations, messages, user_knowledge,
       relationship_stage, persona_temp_blocks, signal_daily_deltas
    TO unde_shard_readonly;

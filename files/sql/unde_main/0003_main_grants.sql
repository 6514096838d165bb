-- unde_main grants. Privileges go to NOLOGIN group roles named unde_main_<user>; the Ansible
-- postgresql role creates the LOGIN users (scraper, recognition, orchestrator, app, embed_writer,
-- pgvector_reader, readonly) and makes each a member of its group. See files/sql/README.md.

DO $$
DECLARE
    group_role text;
BEGIN
    FOREACH group_role IN ARRAY ARRAY[
        'unde_main_scraper', 'unde_main_recognition', 'unde_main_orchestrator', 'unde_main_app',
        'unde_main_embed_writer', 'unde_main_pgvector_reader', 'unde_main_readonly'
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
GRANT USAGE ON SCHEMA unde_ai TO unde_main_embed_writer, unde_main_pgvector_reader;

-- scraper: hourly sync job UPSERTs the published catalog (spec 02 §17.4).
GRANT SELECT, INSERT, UPDATE ON products TO unde_main_scraper;

-- recognition (orchestrator): writes its log, reads SKU metadata.
GRANT SELECT, INSERT, UPDATE ON recognition_requests TO unde_main_recognition;
GRANT SELECT ON products TO unde_main_recognition;

-- orchestrator (LLM orchestrator): shard routing, catalog, events; records hard-delete tombstones.
GRANT SELECT ON routing_table, products, events TO unde_main_orchestrator;
GRANT SELECT, INSERT ON deleted_messages_registry TO unde_main_orchestrator;

-- app (API gateway): assigns a shard to a new user, serves the catalog and recognition results,
-- stores the user's feedback on a recognition, records tombstones for the GDPR erase endpoint.
GRANT SELECT, INSERT ON routing_table TO unde_main_app;
GRANT SELECT ON products, events, recognition_requests TO unde_main_app;
GRANT UPDATE (user_feedback) ON recognition_requests TO unde_main_app;
GRANT SELECT, INSERT ON deleted_messages_registry TO unde_main_app;

-- embed_writer (embed-batch): INSERTs embeddings; ON CONFLICT (sku, image_index) DO UPDATE of the
-- vector itself when the model changes; reads products to find new SKUs. No DELETE.
GRANT SELECT, INSERT ON unde_ai.sku_image_embeddings TO unde_main_embed_writer;
GRANT UPDATE (image_url, brand, embedding, model_version)
    ON unde_ai.sku_image_embeddings TO unde_main_embed_writer;
GRANT SELECT ON products TO unde_main_embed_writer;

-- pgvector_reader (ximilar-gw): kNN over the embeddings, joined with products.
GRANT SELECT ON unde_ai.sku_image_embeddings, products TO unde_main_pgvector_reader;

-- readonly (context agent): events and products only.
GRANT SELECT ON events, products TO unde_main_readonly;

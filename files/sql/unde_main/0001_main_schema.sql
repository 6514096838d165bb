-- unde_main (production-db): published catalog, shard routing, tombstones, recognition log,
-- mall/event calendar. Spec 02 §8, §14, §15, §17.4; spec 01 (v5.1 recognition).
-- Applied by unde_sql_migrate in one transaction: no BEGIN/COMMIT here.

CREATE FUNCTION public.unde_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.unde_set_updated_at() FROM PUBLIC;

-- Published catalog: written only by the scraper's hourly sync job (UPSERT on sku) from
-- staging raw_products (image_status = 'collage_ready') joined with raw_availability.
-- sku is globally unique: the sync job uses raw_products.external_id (brand-prefixed where two
-- brands could share an id); it is the key of unde_ai.sku_image_embeddings too.
CREATE TABLE products (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku                     varchar(100) NOT NULL,
    brand                   varchar(50)  NOT NULL,
    source                  varchar(50),                 -- raw_products.source
    staging_id              bigint,                      -- raw_products.id (no FK: other server)
    name                    text         NOT NULL,
    description             text,
    price                   numeric(10, 2),
    currency                varchar(10)  NOT NULL DEFAULT 'KZT',
    category                text,
    colour                  varchar(100),
    sizes                   jsonb,
    composition             text,
    image_url               text,                        -- main photo (Object Storage)
    image_urls              jsonb,                       -- all /originals/ photos, in order
    collage_url             text,
    -- {"<store_id>": {"sizes": [...], "fetched_at": "..."}, ...} from raw_availability
    availability            jsonb        NOT NULL DEFAULT '{}'::jsonb,
    in_stock                boolean      NOT NULL DEFAULT false,
    availability_updated_at timestamptz,
    synced_at               timestamptz  NOT NULL DEFAULT now(),  -- last sync job write
    created_at              timestamptz  NOT NULL DEFAULT now(),
    updated_at              timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT products_sku_key UNIQUE (sku)
);
CREATE INDEX idx_products_brand ON products (brand);
CREATE INDEX idx_products_category ON products (category);
CREATE INDEX idx_products_in_stock ON products (brand, category) WHERE in_stock;
CREATE INDEX idx_products_synced_at ON products (synced_at);
CREATE TRIGGER products_set_updated_at
    BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION public.unde_set_updated_at();

-- Application-level sharding: user_id -> shard (spec 02 §14 "Шардирование").
CREATE TABLE routing_table (
    user_id     uuid PRIMARY KEY,
    shard_index integer     NOT NULL CHECK (shard_index >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    moved_at    timestamptz                                  -- set when the user is rebalanced
);
CREATE INDEX idx_routing_table_shard ON routing_table (shard_index);

-- Tombstones of hard-deleted messages (GDPR). A message is identified by the pair
-- (conversation_id, message_id) everywhere (spec 02 §14); after any shard restore the
-- apply_deletions runbook replays every row with deleted_at after the restore point.
CREATE TABLE deleted_messages_registry (
    conversation_id uuid        NOT NULL,
    message_id      uuid        NOT NULL,
    user_id         uuid,
    deleted_at      timestamptz NOT NULL DEFAULT now(),
    reason          varchar(50) NOT NULL DEFAULT 'user_request',  -- user_request | gdpr_erase | ...
    CONSTRAINT deleted_messages_registry_pkey PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX idx_deleted_messages_user ON deleted_messages_registry (user_id);
CREATE INDEX idx_deleted_messages_deleted_at ON deleted_messages_registry (deleted_at);

-- Recognition log (spec 02 §8), extended for pipeline v5.1's five steps:
--   1 detect (Ximilar) -> 2 tag (Ximilar + Gemini, on demand) -> 3 retrieve (pgvector kNN +
--   conditional Ximilar booster) -> 4 availability filter (staging raw_availability) ->
--   5 rerank (Gemini). step_timings_ms / step_results hold every step by name, e.g.
--   {"detect": 310, "tag": 0, "retrieve": 42, "availability": 3, "rerank": 1450}.
CREATE TABLE recognition_requests (
    id                             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                        uuid,
    photo_url                      text NOT NULL,
    status                         varchar(20) NOT NULL DEFAULT 'processing'
        CHECK (status IN ('processing', 'completed', 'failed')),
    error_message                  text,

    -- Step 1: detection (Ximilar Gateway)
    detected_items                 jsonb,
    detection_time_ms              integer,
    -- Step 2: tagging (Ximilar Gateway + LLM Reranker)
    tags                           jsonb,
    tagging_time_ms                integer,
    -- Step 3: retrieval / visual search (pgvector kNN + conditional Ximilar booster)
    search_results                 jsonb,
    search_time_ms                 integer,
    search_backend                 varchar(20),     -- SEARCH_BACKEND flag: ximilar|pgvector|conditional|dual
    used_ximilar_booster           boolean,
    used_ximilar_tagging           boolean,
    -- Step 4: availability filter
    availability_results           jsonb,
    availability_time_ms           integer,
    candidates_after_availability  integer,
    -- Step 5: visual rerank (LLM Reranker)
    final_matches                  jsonb,
    rerank_time_ms                 integer,

    -- Every step by name (timings in ms, raw results), so new steps need no migration.
    step_timings_ms                jsonb NOT NULL DEFAULT '{}'::jsonb,
    step_results                   jsonb NOT NULL DEFAULT '{}'::jsonb,

    -- Totals
    total_time_ms                  integer,
    items_detected                 integer,
    items_matched                  integer,

    user_feedback                  jsonb,

    created_at                     timestamptz NOT NULL DEFAULT now(),
    updated_at                     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_recognition_user ON recognition_requests (user_id);
CREATE INDEX idx_recognition_created ON recognition_requests (created_at DESC);
CREATE TRIGGER recognition_requests_set_updated_at
    BEFORE UPDATE ON recognition_requests
    FOR EACH ROW EXECUTE FUNCTION public.unde_set_updated_at();

-- Mall / event calendar for the Context Agent (spec 02 §15: sales, premieres, festivals,
-- holidays), read through the readonly user and cached for an hour.
CREATE TABLE events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mall_id    varchar(100) NOT NULL,                 -- 'dubai-hills-mall'
    kind       varchar(30)  NOT NULL,                 -- sale | premiere | festival | holiday | ...
    title      text         NOT NULL,
    store      text,                                  -- 'Zara', 'Reel Cinemas' (NULL: mall-wide)
    brand      varchar(50),                           -- for OpportunityMatcher (favourite brands)
    starts_at  timestamptz  NOT NULL,
    ends_at    timestamptz  NOT NULL,
    payload    jsonb        NOT NULL DEFAULT '{}'::jsonb,  -- {"discount": "30%", ...}
    source     varchar(50),
    created_at timestamptz  NOT NULL DEFAULT now(),
    updated_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT events_time_range_check CHECK (ends_at >= starts_at)
);
CREATE INDEX idx_events_mall_time ON events (mall_id, starts_at, ends_at);
CREATE INDEX idx_events_ends_at ON events (ends_at);
CREATE TRIGGER events_set_updated_at
    BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION public.unde_set_updated_at();

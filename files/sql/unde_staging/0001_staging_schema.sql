-- unde_staging (staging-db): raw catalog data, store availability, scraper logs.
-- Spec 02 §6, plus what the catalog apps need (status flows, per-stage errors and retry counters).
-- Applied by unde_sql_migrate in one transaction: no BEGIN/COMMIT here.

-- updated_at is maintained by a trigger, so the column-limited writers (downloader, ximilar,
-- collage) never need UPDATE on it.
CREATE FUNCTION public.unde_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.unde_set_updated_at() FROM PUBLIC;

-- Raw products (Apify metadata; photos, collage and Ximilar state are filled by later stages).
-- image_status: pending -> uploaded -> collage_ready, or error (photo-downloader / collage).
-- sync_status: pending -> synced | skipped | error (scraper's hourly sync to production).
-- ximilar_status: pending -> synced | error (ximilar-sync).
CREATE TABLE raw_products (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,

    source                varchar(50)  NOT NULL,          -- 'apify_zara', ...
    external_id           varchar(100) NOT NULL,          -- the brand's product id
    brand                 varchar(50)  NOT NULL,

    name                  text,
    description           text,
    price                 numeric(10, 2),
    currency              varchar(10) DEFAULT 'KZT',
    category              text,
    colour                varchar(100),
    sizes                 jsonb,
    composition           text,

    original_image_urls   jsonb,                          -- brand CDN URLs (Apify)
    image_urls            jsonb,                          -- our Object Storage /originals/ URLs
    collage_url           text,                           -- Object Storage /collages/ URL

    raw_data              jsonb,
    scraped_at            timestamptz NOT NULL,

    image_status          varchar(20) NOT NULL DEFAULT 'pending',
    download_attempts     smallint    NOT NULL DEFAULT 0, -- photo-downloader retries
    collage_attempts      smallint    NOT NULL DEFAULT 0, -- collage retries
    error_message         text,                           -- last photo/collage error

    sync_status           varchar(20) NOT NULL DEFAULT 'pending',
    sync_attempts         smallint    NOT NULL DEFAULT 0,
    sync_error_message    text,
    synced_at             timestamptz,

    ximilar_status        varchar(20) NOT NULL DEFAULT 'pending',
    ximilar_attempts      smallint    NOT NULL DEFAULT 0,
    ximilar_error_message text,
    ximilar_synced_at     timestamptz,

    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT raw_products_source_external_id_key UNIQUE (source, external_id),
    CONSTRAINT raw_products_image_status_check
        CHECK (image_status IN ('pending', 'uploaded', 'collage_ready', 'error')),
    CONSTRAINT raw_products_sync_status_check
        CHECK (sync_status IN ('pending', 'synced', 'skipped', 'error')),
    CONSTRAINT raw_products_ximilar_status_check
        CHECK (ximilar_status IN ('pending', 'synced', 'error')),
    CONSTRAINT raw_products_attempts_check
        CHECK (download_attempts >= 0 AND collage_attempts >= 0 AND sync_attempts >= 0
               AND ximilar_attempts >= 0)
);

CREATE TRIGGER raw_products_set_updated_at
    BEFORE UPDATE ON raw_products
    FOR EACH ROW EXECUTE FUNCTION public.unde_set_updated_at();

-- Availability in physical stores (Mobile API, hourly).
-- The spec's UNIQUE(brand, store_id, product_id, fetched_at::date) is not valid SQL (a UNIQUE
-- constraint takes columns only) and fetched_at::date would depend on the session time zone.
-- "One row per product, store and UTC day" is a stored generated column + a UNIQUE constraint,
-- so the hourly poll upserts:
--   INSERT ... ON CONFLICT (brand, store_id, product_id, fetched_on)
--   DO UPDATE SET sizes_in_stock = EXCLUDED.sizes_in_stock, fetched_at = EXCLUDED.fetched_at
CREATE TABLE raw_availability (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand          varchar(50)  NOT NULL,
    store_id       integer      NOT NULL,
    product_id     varchar(100) NOT NULL,              -- = raw_products.external_id
    sizes_in_stock jsonb        NOT NULL,
    fetched_at     timestamptz  NOT NULL,
    fetched_on     date GENERATED ALWAYS AS ((fetched_at AT TIME ZONE 'UTC')::date) STORED,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT raw_availability_product_store_day_key UNIQUE (brand, store_id, product_id, fetched_on)
);

-- Physical stores (Kazakhstan).
CREATE TABLE raw_stores (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand      varchar(50) NOT NULL,
    store_id   integer     NOT NULL,
    name       text,
    address    text,
    city       varchar(100) DEFAULT 'Almaty',
    country    varchar(10)  DEFAULT 'KZ',
    mall_name  text,
    latitude   numeric(10, 7),
    longitude  numeric(10, 7),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT raw_stores_brand_store_id_key UNIQUE (brand, store_id)
);

-- Scraper / collector run logs.
CREATE TABLE scraper_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scraper_name     varchar(100) NOT NULL,
    run_id           varchar(100),
    status           varchar(20)  NOT NULL,
    records_fetched  integer DEFAULT 0,
    records_new      integer DEFAULT 0,
    records_updated  integer DEFAULT 0,
    records_errors   integer DEFAULT 0,
    started_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    duration_seconds integer,
    error_message    text,
    metadata         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Indexes (spec 02 §6). external_id alone is indexed for the sync join on product_id.
CREATE INDEX idx_raw_products_brand ON raw_products (brand);
CREATE INDEX idx_raw_products_image_status ON raw_products (image_status);
CREATE INDEX idx_raw_products_sync_status ON raw_products (sync_status);
CREATE INDEX idx_raw_products_ximilar_status ON raw_products (ximilar_status);
CREATE INDEX idx_raw_products_external_id ON raw_products (external_id);
CREATE INDEX idx_raw_products_scraped_at ON raw_products (scraped_at);
CREATE INDEX idx_raw_availability_brand_store ON raw_availability (brand, store_id);
CREATE INDEX idx_raw_availability_product ON raw_availability (product_id);
CREATE INDEX idx_raw_availability_fetched ON raw_availability (fetched_at);
CREATE INDEX idx_scraper_logs_name ON scraper_logs (scraper_name);
CREATE INDEX idx_scraper_logs_started ON scraper_logs (started_at DESC);

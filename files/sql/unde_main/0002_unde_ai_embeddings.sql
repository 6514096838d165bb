-- v5.1 dual retrieval: FashionCLIP 2.0 image embeddings of every catalog photo (spec 01:
-- embed-batch writes, ximilar-gw reads kNN).
--
-- unde_ai is a SCHEMA inside unde_main, not a separate database: one PostgreSQL database means
-- one PgBouncer entry and pool per user, one pgBackRest stanza, and the kNN query can join
-- products (availability, price) in one statement. Spec 01 names the table
-- "unde_ai.sku_image_embeddings" (schema-qualified); its day-5b "psql ... -d unde_ai" is
-- replaced by this migration (applied to unde_main); a client that wants a database called
-- unde_ai gets a PgBouncer alias "unde_ai = dbname=unde_main" and uses schema-qualified names.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA unde_ai;
REVOKE ALL ON SCHEMA unde_ai FROM PUBLIC;

CREATE TABLE unde_ai.sku_image_embeddings (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku           varchar(100) NOT NULL,     -- products.sku (no FK: embed-batch may index a SKU
                                             -- before the hourly sync publishes it, and a SKU
                                             -- leaving the catalog must not drop its embeddings)
    brand         varchar(50)  NOT NULL,
    image_url     text         NOT NULL,     -- Object Storage /originals/ URL
    image_index   smallint     NOT NULL CHECK (image_index >= 0),  -- photo position within the SKU
    embedding     vector(512)  NOT NULL,     -- FashionCLIP 2.0
    model_version varchar(50)  NOT NULL,     -- 'fashionclip-2.0-onnx'
    created_at    timestamptz  NOT NULL DEFAULT now(),
    -- "unique per SKU image": one row per photo of a SKU; re-embedding (new model) updates it.
    CONSTRAINT sku_image_embeddings_sku_image_key UNIQUE (sku, image_index)
);

CREATE INDEX idx_sku_image_embeddings_hnsw
    ON unde_ai.sku_image_embeddings USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX idx_sku_image_embeddings_brand ON unde_ai.sku_image_embeddings (brand);

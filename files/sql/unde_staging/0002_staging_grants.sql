-- unde_staging grants (spec 02 §6 "Пользователи БД" + v5.1 recognition availability filter).
-- Privileges go to NOLOGIN group roles named unde_staging_<user>; the Ansible postgresql role
-- creates the LOGIN users (apify, downloader, ximilar, scraper, collage, recognition) and makes
-- each a member of its group. See files/sql/README.md.

DO $$
DECLARE
    group_role text;
BEGIN
    FOREACH group_role IN ARRAY ARRAY[
        'unde_staging_apify', 'unde_staging_downloader', 'unde_staging_ximilar',
        'unde_staging_scraper', 'unde_staging_collage', 'unde_staging_recognition'
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = group_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', group_role);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), group_role);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', group_role);
    END LOOP;
    -- Nobody else connects or creates temp tables here.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- apify: collector upserts catalog metadata (INSERT ... ON CONFLICT (source, external_id)
-- DO UPDATE) and may reset the pipeline statuses of a changed product; writes its run logs.
GRANT SELECT, INSERT ON raw_products TO unde_staging_apify;
GRANT UPDATE (brand, name, description, price, currency, category, colour, sizes, composition,
              original_image_urls, raw_data, scraped_at, image_status, sync_status)
    ON raw_products TO unde_staging_apify;
GRANT SELECT, INSERT, UPDATE ON scraper_logs TO unde_staging_apify;

-- downloader (photo-downloader): image_status, image_urls (+ its error and retry counter).
GRANT SELECT ON raw_products TO unde_staging_downloader;
GRANT UPDATE (image_status, image_urls, error_message, download_attempts)
    ON raw_products TO unde_staging_downloader;

-- ximilar (ximilar-sync): ximilar_status (+ its timestamp, error and retry counter).
GRANT SELECT ON raw_products TO unde_staging_ximilar;
GRANT UPDATE (ximilar_status, ximilar_synced_at, ximilar_error_message, ximilar_attempts)
    ON raw_products TO unde_staging_ximilar;

-- collage: reads uploaded products, writes collage_url and image_status = 'collage_ready'.
GRANT SELECT ON raw_products TO unde_staging_collage;
GRANT UPDATE (collage_url, image_status, error_message, collage_attempts)
    ON raw_products TO unde_staging_collage;

-- scraper: READ/WRITE all (availability poll, stores, sync job, cleanup_old_data at 04:00).
GRANT SELECT, INSERT, UPDATE, DELETE ON raw_products, raw_availability, raw_stores, scraper_logs
    TO unde_staging_scraper;

-- recognition (v5.1 availability filter): which SKUs are in stock in which store.
GRANT SELECT ON raw_availability, raw_stores TO unde_staging_recognition;

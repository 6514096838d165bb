-- ximilar-sync sends each SKU's stores with its images (spec 02 §4 metadata "store"/"floor"):
-- it reads where the product is in stock (raw_availability) and the store names (raw_stores).
-- Read-only; nothing else changes for the ximilar group.
GRANT SELECT ON raw_availability, raw_stores TO unde_staging_ximilar;

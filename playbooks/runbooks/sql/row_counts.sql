-- Exact row count of every table of the current database (user schemas, partitions one by one),
-- one CSV line each: schema.table,rows. Used by verify_backups.yml on the source and on the
-- restored scratch instance. (One UNION ALL query built from the catalog, no server extensions.)
\set ON_ERROR_STOP 1
SELECT COALESCE(
    string_agg(
        format('SELECT %L AS relation, count(*) AS row_count FROM ONLY %I.%I',
               n.nspname || '.' || c.relname, n.nspname, c.relname),
        ' UNION ALL ' ORDER BY n.nspname, c.relname)
    || ' ORDER BY 1',
    'SELECT NULL::text, NULL::bigint WHERE false') AS unde_row_count_query
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%'
\gset
:unde_row_count_query \g (format=csv tuples_only=on)

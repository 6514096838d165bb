"""SQL layer tests (files/sql, the unde_sql_migrate module)."""

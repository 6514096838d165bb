-- v5.1 progressive ingestion (embed-batch, Wednesday 03:00): "more photos for SKUs with low rerank
-- scores". embed-batch reads which SKUs the recognition pipeline recently matched with a low score
-- from recognition_requests.final_matches; it needs nothing else of that table (no user data:
-- user_id, photo_url and user_feedback stay unreadable to it).
GRANT SELECT (id, final_matches, created_at) ON recognition_requests TO unde_main_embed_writer;

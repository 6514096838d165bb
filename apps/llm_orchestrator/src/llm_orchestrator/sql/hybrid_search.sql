-- Canonical hybrid search over one user's chat history (spec 02 §14, "Hybrid Search с
-- тематическим Temporal Decay и Confidence"), as the LLM orchestrator runs it for ContextPack.
--
-- Parameters (psycopg named placeholders; pass a dict):
--   conversation_id  uuid  the user's conversation. It is the partition key, so the planner
--                          scans 1 of the 64 messages partitions.
--   query_embedding  text  the query's embedding as pgvector text: '[0.12,-0.03,...]' (1024 floats)
--   query_text       text  the user's utterance for full text (plainto_tsquery('simple', ...))
--   similarity_threshold  float  a vector-only hit needs vec_score above it (SIMILARITY_THRESHOLD,
--                          spec default 0.5)
--   top_k            int   rows returned (RETRIEVAL_TOP_K, spec 15)
-- Returns at most top_k rows: id, episode_card, created_at, role, final_score, memory_type,
-- memory_confidence, vec_score, fts_score (the orchestrator's emotional filter and density cap
-- read memory_type; the scores go to the per-turn log).
--
-- Difference from the spec's text: the vector branch ranks the conversation's embeddable user
-- messages by EXACT cosine distance. The spec's "ORDER BY embedding <=> $1 LIMIT 20" let the
-- planner use the partial HNSW index of the partition, which holds ~12 conversations: HNSW
-- returned its ef_search (40) nearest rows of the whole partition and the conversation filter
-- ran afterwards, leaving ~3 rows (recall@20 ~0.17). Here the candidates come from
-- idx_messages_retrieval (conversation_id) and the MATERIALIZED CTE keeps any vector index
-- out of the ordering, so recall@20 is 1.0 by construction. Figures: bench/README.md.

WITH vector_candidates AS MATERIALIZED (
    -- every embeddable user message of this conversation (hundreds to a few thousand rows)
    SELECT id, content, memory_snippet, memory_type, memory_confidence, created_at, role,
           response_description,
           embedding <=> %(query_embedding)s::vector(1024) AS distance
    FROM messages
    WHERE conversation_id = %(conversation_id)s::uuid
      AND role = 'user'
      AND is_embeddable
      AND NOT is_forgotten
      AND embedding IS NOT NULL
),
vector_results AS (
    SELECT id, content, memory_snippet, memory_type, memory_confidence, created_at, role,
           response_description,
           GREATEST(0, 1 - distance) AS vec_score
    FROM vector_candidates
    ORDER BY distance
    LIMIT 20
),
fts_results AS (
    -- user + assistant messages (response_description is part of tsv)
    SELECT id, content, memory_snippet, memory_type, memory_confidence, created_at, role,
           response_description,
           LEAST(1.0, ts_rank(tsv, plainto_tsquery('simple', %(query_text)s)) * 10) AS fts_score
    FROM messages
    WHERE conversation_id = %(conversation_id)s::uuid
      AND NOT is_forgotten
      AND tsv @@ plainto_tsquery('simple', %(query_text)s)
    ORDER BY fts_score DESC
    LIMIT 10
),
merged AS (
    SELECT
        COALESCE(v.id, f.id) AS id,
        COALESCE(v.content, f.content) AS content,
        COALESCE(v.memory_snippet, f.memory_snippet) AS memory_snippet,
        COALESCE(v.memory_type, f.memory_type) AS memory_type,
        COALESCE(v.memory_confidence, f.memory_confidence) AS memory_confidence,
        COALESCE(v.created_at, f.created_at) AS created_at,
        COALESCE(v.role, f.role) AS role,
        COALESCE(v.response_description, f.response_description) AS response_description,
        COALESCE(v.vec_score, 0) AS vec_score,
        COALESCE(f.fts_score, 0) AS fts_score
    FROM vector_results v
    FULL OUTER JOIN fts_results f ON v.id = f.id
)
-- final ranking
SELECT
    id,
    CASE
        WHEN role = 'assistant' AND response_description IS NOT NULL THEN response_description
        ELSE COALESCE(memory_snippet, LEFT(content, 80))
    END AS episode_card,
    created_at,
    role,
    memory_type,
    memory_confidence,
    vec_score,
    fts_score,
    -- hybrid score x thematic temporal decay (a recency boost >= 1.0) x confidence
    (0.7 * vec_score + 0.3 * fts_score)
    * (1 + 0.3 * EXP(
        -1 * CASE memory_type
            WHEN 'emotion'    THEN 0.015
            WHEN 'event'      THEN 0.008
            WHEN 'general'    THEN 0.005
            WHEN 'preference' THEN 0.002
            WHEN 'fact'       THEN 0.001
            ELSE 0.005
        END
        * (1.3 - COALESCE(memory_confidence, 0.5))
        * EXTRACT(EPOCH FROM NOW() - created_at) / 86400
    )) AS final_score
FROM merged
WHERE vec_score > %(similarity_threshold)s OR fts_score > 0
ORDER BY final_score DESC
LIMIT %(top_k)s;

-- GDPR erase of a user by the LLM orchestrator's admin tool (unde-llm-orchestrator-admin erase-user,
-- llm_orchestrator.forget.erase_user): besides the tombstones it already INSERTs, the orchestrator
-- deletes the user's shard assignment (routing_table) and recognition log (recognition_requests:
-- the user's photos, matches and feedback). DELETE ... WHERE user_id = $1 needs SELECT on user_id;
-- the orchestrator reads no other column of recognition_requests. No UPDATE on either table (routing
-- stays with the API gateway and the rebalancer, the recognition log with recognition).
GRANT DELETE ON routing_table TO unde_main_orchestrator;
GRANT SELECT (user_id), DELETE ON recognition_requests TO unde_main_orchestrator;

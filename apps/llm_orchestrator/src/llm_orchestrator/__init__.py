"""UNDE llm-orchestrator.

Dialogue: generate_response on dialogue_queue (ContextPack, LLM providers with fallback) and message
enrichment on the enrichment queue.

Deployed by ``roles/llm_orchestrator`` on local-orchestrator (10.2.0.17).
"""

__version__ = "0.1.0"

"""UNDE llm-reranker.

LLM reranker: /tag (style, occasion, brand style, season) and /rerank (visual + semantic) through
Gemini.

Deployed by ``roles/llm_reranker`` on llm-reranker (10.1.0.13).
"""

__version__ = "0.1.0"

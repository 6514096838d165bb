"""UNDE ximilar-gw.

Ximilar gateway: /detect, /tag, /search with v5.1 dual retrieval (pgvector kNN via the embedder +
conditional Ximilar booster).

Deployed by ``roles/ximilar_gw`` on ximilar-gw (10.1.0.12).
"""

__version__ = "0.1.0"

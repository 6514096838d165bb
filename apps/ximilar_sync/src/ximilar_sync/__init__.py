"""UNDE ximilar-sync.

Pushes new catalog SKUs (with their images and metadata) into the Ximilar Collection; retries
failures.

Deployed by ``roles/ximilar_sync`` on ximilar-sync (10.1.0.11).
"""

__version__ = "0.1.0"

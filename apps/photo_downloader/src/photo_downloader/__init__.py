"""UNDE photo-downloader.

Downloads pending brand photos (residential proxy) and uploads them to Object Storage originals/.

Deployed by ``roles/photo_downloader`` on photo-downloader (10.1.0.10).
"""

__version__ = "0.1.0"

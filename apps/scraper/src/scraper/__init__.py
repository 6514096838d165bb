"""UNDE scraper.

Zara mobile API availability poll (KZ stores) into staging, hourly sync of verified products to
production, staging cleanup.

Deployed by ``roles/scraper`` on scraper (10.1.0.3).
"""

__version__ = "0.1.0"

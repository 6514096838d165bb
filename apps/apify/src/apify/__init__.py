"""UNDE apify.

Weekly product metadata collection through Apify actors, one brand per hour on Sunday, into staging
raw_products.

Deployed by ``roles/apify`` on apify (10.1.0.9).
"""

__version__ = "0.1.0"

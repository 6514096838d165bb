"""UNDE collage.

Glues each product's originals horizontally into one collage (JPEG q=95, 4:4:4, no downscaling) for
try-on.

Deployed by ``roles/collage`` on collage (10.1.0.16).
"""

__version__ = "0.1.0"

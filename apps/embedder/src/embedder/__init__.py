"""UNDE embedder.

Runtime image embedder: POST /embed → L2-normalised vector(512) from the FashionCLIP 2.0 ONNX image
encoder.

Deployed by ``roles/embedder`` on embedder (10.1.0.15).
"""

__version__ = "0.1.0"

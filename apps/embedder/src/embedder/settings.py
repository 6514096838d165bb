"""Settings of embedder (embedder (10.1.0.15)).

Read by ``EmbedderSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/embedder/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from unde_common.settings import CommaList, HttpClientSettings, HttpServiceSettings, ImageFetchSettings


class EmbedderSettings(HttpServiceSettings, HttpClientSettings, ImageFetchSettings):
    """Runtime image embedder: POST /embed → L2-normalised vector(512) from the FashionCLIP 2.0 ONNX
    image encoder.
    """

    app_name: str = "embedder"
    port: int = Field(default=8003, ge=1, le=65535)

    #: FashionCLIP 2.0 image encoder exported to ONNX
    model_path: Path = Path("/opt/unde/embedder/models/fashionclip2-image.onnx")
    embedding_dim: int = Field(default=512, ge=1)
    #: onnxruntime intra-op threads (0 = onnxruntime's default)
    onnx_threads: int = Field(default=0, ge=0)
    #: written to sku_image_embeddings.model_version and returned with every vector
    model_version: str = "fashionclip-2.0-onnx"
    #: onnxruntime execution providers in order of preference (CUDAExecutionProvider on a GPU host)
    onnx_providers: CommaList = Field(default_factory=lambda: ["CPUExecutionProvider"])
    #: seconds to download one image (connect + read)
    image_fetch_timeout_s: float = Field(default=10.0, gt=0)

"""The FashionCLIP 2.0 image encoder run with onnxruntime.

CLIP preprocessing, as the model was trained: resize the shortest side to 224 (bicubic), center
crop 224x224, scale to [0, 1], normalise with CLIP's mean/std, NCHW float32. The ONNX model takes
one float32 input ``[batch, 3, 224, 224]`` and its first output is ``[batch, D]`` (D = 512 for
FashionCLIP 2.0); the encoder L2-normalises it so cosine similarity is a dot product (pgvector's
``vector_cosine_ops``).

    encoder = ImageEncoder(Path("fashionclip2-image.onnx"), dim=512)
    vectors = encoder.embed([image1, image2])       # (2, 512) float32, unit length
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from PIL import Image

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageEncoder", "ModelError", "preprocess"]

CLIP_MEAN: Final = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD: Final = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

FloatArray = npt.NDArray[np.float32]


class ModelError(RuntimeError):
    """The model file is missing, unreadable or has the wrong signature."""


def preprocess(image: Image.Image, size: int = 224) -> FloatArray:
    """One image → CLIP input ``[3, size, size]`` float32."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - CLIP_MEAN) / CLIP_STD
    chw: FloatArray = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    return chw


class ImageEncoder:
    """An onnxruntime session over the image encoder; thread-safe ``embed``."""

    def __init__(
        self,
        model_path: Path,
        *,
        dim: int = 512,
        threads: int = 0,
        providers: Sequence[str] | None = None,
        image_size: int = 224,
    ) -> None:
        if not model_path.is_file():
            raise ModelError(f"model file {model_path} does not exist")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or [
            "CPUExecutionProvider"
        ]
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"model file {model_path} cannot be loaded: {exc}"[:500]) from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"model {model_path} has {len(inputs)} inputs; an image encoder has one")
        shape: list[Any] = list(inputs[0].shape)
        if len(shape) != 4 or shape[1:] != [3, image_size, image_size]:
            want = f"[N, 3, {image_size}, {image_size}]"
            raise ModelError(f"model {model_path} input shape {shape} is not {want}")
        out_shape: list[Any] = list(outputs[0].shape)
        if out_shape[-1] != dim:
            raise ModelError(f"model {model_path} output shape {out_shape} does not end in {dim}")
        self.model_path = model_path
        self.dim = dim
        self.image_size = image_size
        self.input_name: str = inputs[0].name
        self.output_name: str = outputs[0].name
        self.providers: list[str] = list(self.session.get_providers())
        self._lock = threading.Lock()

    def embed_batch(self, batch: FloatArray) -> FloatArray:
        """Preprocessed ``[N, 3, S, S]`` → L2-normalised ``[N, dim]``."""
        with self._lock:
            raw = self.session.run([self.output_name], {self.input_name: batch})[0]
        vectors = np.asarray(raw, dtype=np.float32).reshape(batch.shape[0], self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise ModelError("the model produced a zero or non-finite embedding")
        result: FloatArray = (vectors / norms).astype(np.float32)
        return result

    def embed(self, images: Sequence[Image.Image]) -> FloatArray:
        """Images → L2-normalised ``[len(images), dim]`` embeddings."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = np.stack([preprocess(img, self.image_size) for img in images])
        return self.embed_batch(batch)

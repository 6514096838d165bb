"""A small ONNX model with the FashionCLIP 2.0 image encoder's signature, for tests, the lab and
benchmarks (the real weights cannot be downloaded on these machines).

``pixel_values`` float32 ``[N, 3, 224, 224]`` → Conv 16x16/16 (3→8 channels, a 14x14 grid) →
Flatten → Gemm → ``image_embeds`` float32 ``[N, 512]``. Weights are random with a fixed seed, so
the same image always gives the same vector and different images give different vectors, while
the spatial grid keeps similar images close. Needs the ``onnx`` package (a dependency of the test kit).

    python -m unde_testkit.testmodel /path/model.onnx
    python -m unde_testkit.testmodel --lab    # the lab's model, built once (LAB_MODEL)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["LAB_MODEL", "build_test_model", "lab_model"]

# Where the embedder and embed_batch roles' defaults copy the encoder from on the controller
# (``{{ playbook_dir }}/../.cache/models/fashionclip2-image.onnx``), relative to the repository root.
LAB_MODEL = Path(".cache/models/fashionclip2-image.onnx")


def build_test_model(path: Path, *, dim: int = 512, size: int = 224, seed: int = 7) -> Path:
    """Write the model to ``path`` (parents created); return ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    channels, patch = 8, 16
    grid = size // patch
    conv_w = rng.normal(0, 0.2, (channels, 3, patch, patch)).astype(np.float32)
    conv_b = np.zeros(channels, dtype=np.float32)
    flat = channels * grid * grid
    gemm_w = rng.normal(0, 1 / np.sqrt(flat), (flat, dim)).astype(np.float32)
    gemm_b = np.zeros(dim, dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["pixel_values", "conv_w", "conv_b"], ["c"], strides=[patch, patch]),
        helper.make_node("Flatten", ["c"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fashionclip2_image_test",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(gemm_w, "gemm_w"),
            numpy_helper.from_array(gemm_b, "gemm_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="unde-test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def lab_model() -> Path:
    """The lab's model under the repository root, built if it is not there yet."""
    from unde_testkit.loaders import repo_root

    path = repo_root() / LAB_MODEL
    return path if path.is_file() else build_test_model(path)


if __name__ == "__main__":
    print(lab_model() if sys.argv[1:] == ["--lab"] else build_test_model(Path(sys.argv[1])))

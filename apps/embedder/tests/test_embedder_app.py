"""The embedder: CLIP preprocessing, the ONNX encoder (a small model with FashionCLIP 2.0's
signature, built by the test), POST /embed against images served on loopback, bad input, /health,
/metrics and the ``python -m embedder`` entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedder.app import create
from embedder.model import CLIP_MEAN, CLIP_STD, ImageEncoder, ModelError, preprocess
from embedder.settings import EmbedderSettings
from unde_common.images import ImageError, ImageRef, decode_image
from unde_testkit.recognition_simulators import ImageHost, solid_image
from unde_testkit.recognition_testbed import LOOPBACK_IMAGE_FETCH, png_bytes, serve_asgi
from unde_testkit.service_auth import service_client
from unde_testkit.testing import EnvWriter, EnvWriterFactory, assert_entry_point, assert_health_ok, free_port
from unde_testkit.testmodel import build_test_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("model") / "m.onnx")


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[ImageHost, str]]:
    images = ImageHost()
    images.put("red.png", solid_image((400, 300), (200, 30, 40), stripes=4))
    images.put("blue.png", solid_image((300, 500), (30, 60, 190)))
    with serve_asgi(images.app) as url:
        yield images, url


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(EmbedderSettings)


def test_preprocess_is_clip() -> None:
    image = Image.new("RGB", (448, 300), (255, 0, 128))
    x = preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    expected = (np.array([1.0, 0.0, 128 / 255], dtype=np.float32) - CLIP_MEAN) / CLIP_STD
    assert np.allclose(x[:, 112, 112], expected, atol=1e-5)


def test_encoder_gives_unit_vectors_that_tell_images_apart(model: Path) -> None:
    encoder = ImageEncoder(model, dim=512)
    red = solid_image((300, 300), (200, 30, 40), stripes=4)
    vectors = encoder.embed([red, red.copy(), solid_image((300, 300), (30, 60, 190))])
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(vectors[0] @ vectors[2]) < 0.95


def test_encoder_refuses_missing_or_wrong_models(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        ImageEncoder(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="does not end in 768"):
        ImageEncoder(model, dim=768)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot be loaded"):
        ImageEncoder(tmp_path / "junk.onnx")


def test_image_refs_and_decoding() -> None:
    ref = ImageRef.parse("https://cdn.example/p.jpg#xywh=10,20,30,40")
    assert (ref.url, ref.region) == ("https://cdn.example/p.jpg", (10, 20, 30, 40))
    for bad in ("ftp://x/y.jpg", "not a url", "https://x/y.jpg#t=10", "https://x/y.jpg#xywh=1,1,0,5"):
        with pytest.raises(ImageError) as info:
            ImageRef.parse(bad)
        assert info.value.status == 422
    crop = decode_image(png_bytes(solid_image((100, 80), (1, 2, 3))), "x", (10, 10, 50, 500))
    assert crop.size == (50, 70)
    with pytest.raises(ImageError) as info:
        decode_image(b"<html>", "page")
    assert info.value.status == 415


def test_embed_endpoint(model: Path, host: tuple[ImageHost, str], write_env: EnvWriter) -> None:
    _images, url = host
    loopback = {k.upper(): v for k, v in LOOPBACK_IMAGE_FETCH.items()}
    write_env({"MODEL_PATH": str(model), "MAX_IMAGE_BYTES": "100000", **loopback})
    with service_client(create(EmbedderSettings.load())) as client:
        whole = client.post("/embed", json={"image_url": f"{url}/img/red.png"})
        crop = client.post("/embed", json={"image_url": f"{url}/img/red.png#xywh=0,0,200,300"})
        assert whole.status_code == 200, whole.text
        body = whole.json()
        assert body["dim"] == 512 and len(body["embedding"]) == 512
        assert body["model_version"] == "fashionclip-2.0-onnx"
        assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-4)
        assert crop.json()["embedding"] != body["embedding"]
        errors = {
            "html": client.post("/embed", json={"image_url": f"{url}/img-html/x"}),
            "big": client.post("/embed", json={"image_url": f"{url}/img-big/x"}),
            "missing": client.post("/embed", json={"image_url": f"{url}/img/none.png"}),
            "unreachable": client.post("/embed", json={"image_url": f"http://127.0.0.1:{free_port()}/a.jpg"}),
            "scheme": client.post("/embed", json={"image_url": "file:///etc/passwd"}),
            "body": client.post("/embed", json={"url": "x"}),
            "json": client.post("/embed", content=b"{", headers={"content-type": "application/json"}),
        }
        metrics = client.get("/metrics").text
    status = {k: r.status_code for k, r in errors.items()}
    assert status == {
        "html": 415,
        "big": 413,
        "missing": 422,
        "unreachable": 422,
        "scheme": 422,
        "body": 422,
        "json": 422,
    }
    assert "not an image" in errors["html"].json()["detail"]
    assert "100000 byte limit" in errors["big"].json()["detail"]
    assert "unreachable" in errors["unreachable"].json()["detail"]
    assert "embedder_inference_latency_ms_count 2.0" in metrics
    assert 'embedder_errors_total{reason="http_415"} 1.0' in metrics
    assert "embedder_requests_total 7.0" in metrics


def test_health_names_a_missing_model(write_env: EnvWriter, tmp_path: Path) -> None:
    write_env({"MODEL_PATH": str(tmp_path / "absent.onnx")})
    with service_client(create(EmbedderSettings.load())) as client:
        health = client.get("/health")
        embed = client.post("/embed", json={"image_url": "http://127.0.0.1/x.jpg"})
    assert health.status_code == 503 and health.json()["checks"]["model"]["reason"] == "error"
    assert "absent.onnx" not in health.text  # the path goes to the log only
    assert embed.status_code == 503 and "model not loaded" in embed.json()["detail"]


def test_a_failing_model_answers_a_neutral_500_and_logs_why(
    host: tuple[ImageHost, str], write_env: EnvWriter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model whose embeddings are all zero (its projection zeroed) fails every image with a
    ModelError; the answer says nothing about the model, the log says what went wrong."""
    import onnx
    from onnx import numpy_helper

    path = build_test_model(tmp_path / "zero.onnx")
    graph = onnx.load(str(path))
    for init in graph.graph.initializer:
        if init.name == "gemm_w":
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), "gemm_w"))
    onnx.save(graph, str(path))
    _images, url = host
    write_env({"MODEL_PATH": str(path), **{k.upper(): v for k, v in LOOPBACK_IMAGE_FETCH.items()}})
    with service_client(create(EmbedderSettings.load()), raise_server_exceptions=False) as client:
        answer = client.post("/embed", json={"image_url": f"{url}/img/red.png"})
        metrics = client.get("/metrics").text
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal_error", "detail": "internal error"}
    assert 'embedder_errors_total{reason="inference"} 1.0' in metrics
    logged = [str(e) for r in caplog.records if r.exc_info and isinstance(e := r.exc_info[1], ModelError)]
    assert logged and "zero or non-finite embedding" in logged[0]


def test_health_and_metrics(write_env: EnvWriter, model: Path) -> None:
    write_env({"MODEL_PATH": str(model)})
    assert_health_ok(create(EmbedderSettings.load()), "embedder", ["model"])


def test_entry_point_serves_and_logs_json(write_env: EnvWriter, model: Path) -> None:
    write_env({"MODEL_PATH": str(model)})
    assert_entry_point("embedder", write_env)

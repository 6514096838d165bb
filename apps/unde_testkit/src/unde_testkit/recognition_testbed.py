"""A recognition test bed (tests, the lab scenario, the benchmark; never imported by app code):
migrated databases, a small catalog with real embeddings, and a street photo whose three items land
in the three score bands.

Catalog (brand/sku): ``zara/EXACT-1`` (red jacket: the first item on the photo is this very
picture → exact), ``mango/SIM-A|B|C`` (purple-ish jackets near the second item → similar),
fillers in other colours without stripes, and nothing close to the third item (a near-black top)
→ style fallback. Every SKU is in stock except ``zara/GONE-1``.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from PIL import Image
from psycopg.types.json import Jsonb

from unde_testkit.recognition_simulators import GeminiSimulator, ImageHost, XimilarSimulator, solid_image
from unde_testkit.testing_sql import apply_migrations

__all__ = [
    "PHOTO_ITEMS",
    "CatalogItem",
    "Stack",
    "catalog",
    "migrate_database",
    "recognition_bed",
    "seed",
    "serve_asgi",
    "street_photo",
]


@dataclass(frozen=True)
class CatalogItem:
    sku: str
    brand: str
    name: str
    category: str
    colour: str
    image: Image.Image = field(compare=False)
    in_stock: bool = True


def catalog() -> list[CatalogItem]:
    size = (200, 300)
    items = [
        CatalogItem(
            "EXACT-1",
            "zara",
            "Red striped jacket",
            "Jackets",
            "red",
            solid_image(size, (200, 30, 40), stripes=4),
        ),
        CatalogItem(
            "SIM-A", "mango", "Plum jacket", "Jackets", "purple", solid_image(size, (150, 70, 110), stripes=3)
        ),
        CatalogItem(
            "SIM-B",
            "mango",
            "Violet jacket",
            "Jackets",
            "purple",
            solid_image(size, (130, 40, 170), stripes=4),
        ),
        CatalogItem(
            "SIM-C", "mango", "Rose jacket", "Jackets", "pink", solid_image(size, (190, 80, 120), stripes=5)
        ),
        CatalogItem(
            "GONE-1",
            "zara",
            "Sold-out plum jacket",
            "Jackets",
            "purple",
            solid_image(size, (160, 60, 130), stripes=3),
            in_stock=False,
        ),
    ]
    fillers = [
        ("blue", (30, 60, 190), "Jeans"),
        ("green", (40, 150, 60), "Jackets"),
        ("yellow", (230, 210, 40), "Tops"),
        ("white", (240, 240, 240), "Tops"),
        ("khaki", (189, 183, 107), "Jackets"),
        ("grey", (150, 150, 150), "Tops"),
    ]
    for i, (colour, rgb, category) in enumerate(fillers):
        items.append(
            CatalogItem(
                f"FILL-{i}",
                "bershka",
                f"{colour.title()} {category[:-1].lower()}",
                category,
                colour,
                solid_image(size, rgb),
            )
        )
    items.append(
        CatalogItem("TOP-BLACK", "bershka", "Black top", "Tops", "black", solid_image(size, (235, 235, 235)))
    )
    return items


#: (name Ximilar detects, (x1, y1, x2, y2), prob) of the street photo
PHOTO_ITEMS: list[tuple[str, tuple[int, int, int, int], float]] = [
    ("Jackets", (40, 50, 240, 350), 0.95),
    ("Jackets", (300, 50, 500, 350), 0.91),
    ("Tops", (560, 50, 760, 350), 0.88),
]


def street_photo() -> Image.Image:
    """800x400 grey background with the three items of PHOTO_ITEMS."""
    photo = Image.new("RGB", (800, 400), (128, 128, 128))
    items = {c.sku: c for c in catalog()}
    photo.paste(items["EXACT-1"].image, (40, 50))
    photo.paste(solid_image((200, 300), (170, 50, 140), stripes=3), (300, 50))
    photo.paste(solid_image((200, 300), (12, 12, 12)), (560, 50))
    return photo


#: image-fetch settings (unde_common.settings.ImageFetchSettings) that let a service download from
#: the loopback image host of the tests; production refuses loopback and plain http
LOOPBACK_IMAGE_FETCH: dict[str, str] = {
    "image_fetch_hosts": "127.0.0.1",
    "image_fetch_schemes": "http",
    "image_fetch_allow_networks": "127.0.0.1/32",
}

_MIGRATED: dict[tuple[str, str], str] = {}


def migrate_database(superuser_dsn: str, name: str, schema: str) -> str:
    """Create database ``name`` on the test server and apply files/sql/<schema> with the project's
    migration runner (as tests/sql does); once per process. Returns its DSN."""
    key = (superuser_dsn, name)
    if key in _MIGRATED:
        return _MIGRATED[key]
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = superuser_dsn.replace("/postgres?", f"/{name}?", 1)
    apply_migrations(dsn, schema)
    _MIGRATED[key] = dsn
    return dsn


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def seed(
    main_dsn: str,
    staging_dsn: str,
    *,
    image_base: str,
    host: ImageHost | None = None,
    ximilar: XimilarSimulator | None = None,
    embed: Any = None,
) -> list[CatalogItem]:
    """Load the catalog: images (ImageHost ``catalog/<sku>.png``), ``products``, embeddings (with
    ``embed(list[Image]) -> array`` when given), Ximilar records and availability."""
    items = catalog()
    vectors = embed([c.image for c in items]) if embed is not None else None
    with psycopg.connect(main_dsn) as conn:
        conn.execute("TRUNCATE products, unde_ai.sku_image_embeddings, recognition_requests")
        for i, c in enumerate(items):
            url = f"{image_base}/img/catalog/{c.sku}.png"
            if host is not None:
                host.put(f"catalog/{c.sku}.png", c.image)
            conn.execute(
                "INSERT INTO products (sku, brand, name, price, category, colour, image_url, image_urls,"
                " in_stock) VALUES (%s, %s, %s, 49.90, %s, %s, %s, %s, %s)",
                (c.sku, c.brand, c.name, c.category, c.colour, url, Jsonb([url]), c.in_stock),
            )
            if vectors is not None:
                literal = "[" + ",".join(f"{float(v):.7g}" for v in vectors[i]) + "]"
                conn.execute(
                    "INSERT INTO unde_ai.sku_image_embeddings (sku, brand, image_url, image_index, embedding,"
                    " model_version) VALUES (%s, %s, %s, 0, %s::vector, 'test-onnx')",
                    (c.sku, c.brand, url, literal),
                )
            if ximilar is not None:
                ximilar.add_record(c.image, sku_id=c.sku, brand=c.brand, name=c.name, _url=url)
    with psycopg.connect(staging_dsn) as conn:
        conn.execute("TRUNCATE raw_availability, raw_stores")
        conn.execute(
            "INSERT INTO raw_stores (brand, store_id, name, mall_name) VALUES"
            " ('zara', 1, 'Zara Dostyk Plaza', 'Dostyk Plaza'), ('mango', 2, 'Mango Mega', 'Mega'),"
            " ('bershka', 3, 'Bershka Mega', 'Mega')"
        )
        store = {"zara": 1, "mango": 2, "bershka": 3}
        for c in items:
            if c.in_stock:
                conn.execute(
                    "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at)"
                    " VALUES (%s, %s, %s, %s, now() - interval '1 hour')",
                    (c.brand, store[c.brand], c.sku, Jsonb(["S", "M"])),
                )
            else:  # stale: polled two days ago, outside the 24 h window
                conn.execute(
                    "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at)"
                    " VALUES (%s, %s, %s, %s, now() - interval '2 days')",
                    (c.brand, store[c.brand], c.sku, Jsonb(["M"])),
                )
    return items


class _Server:
    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"asgi:{port}", daemon=True)


@contextlib.contextmanager
def serve_asgi(app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app (lifespan on) on loopback from a thread; yields its base URL."""
    from unde_testkit.testing import free_port

    srv = _Server(app, host, port or free_port(host))
    srv.thread.start()
    deadline = time.monotonic() + 20
    while not srv.server.started:
        if not srv.thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server {srv.url} did not start")
        time.sleep(0.01)
    try:
        yield srv.url
    finally:
        srv.server.should_exit = True
        srv.thread.join(timeout=10)


@dataclass
class Stack:
    """The running bed: databases, simulators, embedder and llm-reranker services."""

    main_dsn: str
    staging_dsn: str
    redis_url: str
    images: str
    photo_url: str
    host: ImageHost
    ximilar: XimilarSimulator
    gemini: GeminiSimulator
    ximilar_url: str
    gemini_url: str
    embedder_url: str
    reranker_url: str
    model: Path
    exits: contextlib.ExitStack

    def gateway_settings(self, **overrides: Any) -> Any:
        from ximilar_gw.settings import XimilarGwSettings

        values: dict[str, Any] = {
            "ximilar_api_token": self.ximilar.token,
            "ximilar_collection_id": self.ximilar.collection_id,
            "ximilar_base_url": self.ximilar_url,
            "embedder_url": self.embedder_url,
            "production_db_url": self.main_dsn,
            "redis_url": self.redis_url,
            "http_backoff_base_s": 0.05,
            **LOOPBACK_IMAGE_FETCH,
            **overrides,
        }
        return XimilarGwSettings.load(**values)

    def gateway(self, **overrides: Any) -> str:
        """A ximilar-gw service with these settings (feature flags!), served until the bed closes."""
        from ximilar_gw.app import create

        return self.exits.enter_context(serve_asgi(create(self.gateway_settings(**overrides))))


@contextlib.contextmanager
def recognition_bed(superuser_dsn: str, redis_url: str, workdir: Path) -> Iterator[Stack]:
    """Migrated rec_main / rec_staging, the seeded catalog, the simulators, an ONNX test model, and
    the embedder and llm-reranker services, all on loopback."""
    from embedder.app import create as create_embedder
    from embedder.model import ImageEncoder
    from embedder.settings import EmbedderSettings
    from llm_reranker.app import create as create_reranker
    from llm_reranker.settings import LlmRerankerSettings
    from unde_testkit.service_auth import install_service_auth_env
    from unde_testkit.testmodel import build_test_model

    # the bed's services and the clients built on it (tests, bench/recognition.py) use the test
    # service tokens: callers accepted, SERVICE_TOKEN sent (variables already set are kept)
    install_service_auth_env()
    main = migrate_database(superuser_dsn, "rec_main", "unde_main")
    staging = migrate_database(superuser_dsn, "rec_staging", "unde_staging")
    model = build_test_model(workdir / "fashionclip-test.onnx")
    host, ximilar, gemini = ImageHost(), XimilarSimulator(), GeminiSimulator()
    with contextlib.ExitStack() as exits:
        images = exits.enter_context(serve_asgi(host.app))
        x_url = exits.enter_context(serve_asgi(ximilar.app))
        g_url = exits.enter_context(serve_asgi(gemini.app))
        seed(main, staging, image_base=images, host=host, ximilar=ximilar, embed=ImageEncoder(model).embed)
        photo = street_photo()
        host.put("street.png", photo)
        ximilar.add_photo(photo, PHOTO_ITEMS)
        e_url = exits.enter_context(
            serve_asgi(create_embedder(EmbedderSettings.load(model_path=model, **LOOPBACK_IMAGE_FETCH)))
        )
        reranker = LlmRerankerSettings.load(
            gemini_api_key=gemini.api_key,
            gemini_base_url=g_url,
            http_backoff_base_s=0.05,
            **LOOPBACK_IMAGE_FETCH,
        )
        r_url = exits.enter_context(serve_asgi(create_reranker(reranker)))
        yield Stack(
            main, staging, redis_url.replace("/0", "/6"), images, f"{images}/img/street.png", host, ximilar,
            gemini, x_url, g_url, e_url, r_url, model, exits,
        )  # fmt: skip


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _insert(table: str, columns: str, values: list[str], *, raw_last: bool = False) -> str:
    """One INSERT of the lab seed (our own constants, quoted; PostgreSQL casts the literals)."""
    quoted = [_sql_literal(v) for v in values]
    if raw_last:
        quoted[-1] = values[-1]
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(quoted)});"  # noqa: S608


def lab_assets(out: Path, base_url: str, model: Path) -> None:
    """Files of the lab scenario (molecule/recognition): the images the simulators serve, their
    scenario JSON, and the SQL that loads the catalog (production-db) and availability (staging-db)."""
    import json

    from embedder.model import ImageEncoder

    images = out / "images"
    (images / "catalog").mkdir(parents=True, exist_ok=True)
    items = catalog()
    vectors = ImageEncoder(model).embed([c.image for c in items])
    skus = ", ".join(_sql_literal(c.sku) for c in items)
    main_sql = [  # only the scenario's rows: the lab database is shared with other scenarios
        f"DELETE FROM products WHERE sku IN ({skus});",  # noqa: S608
        f"DELETE FROM unde_ai.sku_image_embeddings WHERE sku IN ({skus});",  # noqa: S608
    ]
    staging_sql = [
        f"DELETE FROM raw_availability WHERE product_id IN ({skus});",  # noqa: S608
        "INSERT INTO raw_stores (brand, store_id, name, mall_name) VALUES ('zara', 1, 'Zara Dostyk Plaza',"
        " 'Dostyk Plaza'), ('mango', 2, 'Mango Mega', 'Mega'), ('bershka', 3, 'Bershka Mega', 'Mega')"
        " ON CONFLICT (brand, store_id) DO NOTHING;",
    ]
    records = []
    store = {"zara": 1, "mango": 2, "bershka": 3}
    for c, vec in zip(items, vectors, strict=True):
        c.image.save(images / "catalog" / f"{c.sku}.png")
        url = f"{base_url}/img/catalog/{c.sku}.png"
        literal = "[" + ",".join(f"{float(v):.7g}" for v in vec) + "]"
        main_sql.append(
            _insert(
                "products",
                "sku, brand, name, price, category, colour, image_url, image_urls, in_stock",
                [
                    c.sku,
                    c.brand,
                    c.name,
                    "49.90",
                    c.category,
                    c.colour,
                    url,
                    json.dumps([url]),
                    str(c.in_stock),
                ],
            )
        )
        main_sql.append(
            _insert(
                "unde_ai.sku_image_embeddings",
                "sku, brand, image_url, image_index, embedding, model_version",
                [c.sku, c.brand, url, "0", literal, "fashionclip-2.0-onnx"],
            )
        )
        age = "1 hour" if c.in_stock else "2 days"
        staging_sql.append(
            _insert(
                "raw_availability",
                "brand, store_id, product_id, sizes_in_stock, fetched_at",
                [c.brand, str(store[c.brand]), c.sku, '["S", "M"]', f"now() - interval '{age}'"],
                raw_last=True,
            )
        )
        records.append(
            {"image": f"catalog/{c.sku}.png", "sku_id": c.sku, "brand": c.brand, "name": c.name, "_url": url}
        )
    street_photo().save(images / "street.png")
    scenario = {
        "token": "lab-sim-token",
        "collection": "unde-catalog",
        "api_key": "lab-sim-key",
        "detections": {"street.png": [[n, list(box), p] for n, box, p in PHOTO_ITEMS]},
        "records": records,
    }
    (out / "scenario.json").write_text(json.dumps(scenario))
    (out / "main.sql").write_text("\n".join(main_sql) + "\n")
    (out / "staging.sql").write_text("\n".join(staging_sql) + "\n")


if __name__ == "__main__":  # pragma: no cover - molecule/recognition prepare
    import argparse

    parser = argparse.ArgumentParser(description="write the lab scenario's assets")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", type=Path, required=True)
    ns = parser.parse_args()
    lab_assets(ns.out, ns.base_url.rstrip("/"), ns.model)
    print(ns.out)

"""The recognition pipeline v5.1 in the lab: the five apps deployed by their roles, one photo
through recognize_photo (Celery on push) with the Ximilar / Gemini simulators on the controller."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
ASSETS = REPO / ".cache" / "recognition-lab"
SIM = "http://198.18.0.1:18080"
UNITS = {
    "ximilar-gw": ["unde-ximilar-gw"],
    "llm-reranker": ["unde-llm-reranker"],
    "embedder": ["unde-embedder"],
    "embed-batch": ["unde-embed-batch", "unde-embed-batch-worker", "unde-embed-batch-beat"],
    "recognition": ["unde-recognition-worker"],
}
ALL_UNITS = [u for units in UNITS.values() for u in units]

SEND = """
import json, os, sys
os.environ["UNDE_ENV_FILE"] = "/opt/unde/recognition/.env"
from recognition.celery_app import make_celery
app = make_celery()
result = app.send_task("recognition.recognize_photo", args=[sys.argv[1], None]).get(timeout=60)
print(json.dumps(result))
"""


@pytest.fixture(scope="module", autouse=True)
def simulators() -> Iterator[None]:
    """The simulators started by prepare.yml are stopped when the tests end."""
    yield
    pid_file = ASSETS / "sim.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        pid_file.unlink()


def psql(lab: Any, host: str, database: str, sql_file: Path) -> str:
    node = lab.host(host)
    remote = f"/root/unde-recognition-{sql_file.name}"
    node.run("rm -f %s", remote)
    res = node.run("printf '%%s' %s > %s", sql_file.read_text(), remote)
    assert res.rc == 0, res.stderr
    out = node.run("runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d %s -f - < %s", database, remote)
    assert out.rc == 0, out.stderr
    return str(out.stdout)


@pytest.mark.journal(*ALL_UNITS)
@pytest.mark.parametrize(("host", "unit"), [(h, u) for h, units in UNITS.items() for u in units])
def test_units_are_active(lab: Any, host: str, unit: str) -> None:
    node = lab.host(host)
    assert node.service(f"{unit}.service").is_running, node.run(
        "journalctl -u %s -n 40 --no-pager", unit
    ).stdout


def test_embedder_answers_a_unit_vector(lab: Any, secrets: dict[str, Any]) -> None:
    embedder = lab.private_ip("embedder")
    body = json.dumps({"image_url": f"{SIM}/img/street.png#xywh=40,50,200,300"})
    # as ximilar-gw calls it: with ximilar_gw's service token (from the environment, not argv)
    token = secrets["vault_service_tokens"]["ximilar_gw"]
    res = lab.host("ximilar-gw").run(
        "UNDE_TEST_TOKEN=%s /opt/unde/ximilar_gw/venv/bin/python -c %s %s %s",
        token,
        "import httpx, os, sys; print(httpx.post(sys.argv[1], content=sys.argv[2],"
        " headers={'content-type': 'application/json',"
        " 'authorization': 'Bearer ' + os.environ['UNDE_TEST_TOKEN']}, timeout=30).text)",
        f"http://{embedder}:8003/embed",
        body,
    )
    assert res.rc == 0, res.stderr
    answer = json.loads(res.stdout)
    assert answer["dim"] == 512 and len(answer["embedding"]) == 512
    assert abs(sum(v * v for v in answer["embedding"]) - 1.0) < 1e-3


@pytest.mark.journal("unde-recognition-worker")
def test_a_photo_goes_through_the_pipeline(lab: Any) -> None:
    psql(lab, "production-db", "unde_main", ASSETS / "main.sql")
    psql(lab, "staging-db", "unde_staging", ASSETS / "staging.sql")
    node = lab.host("recognition")
    res = node.run("/opt/unde/recognition/venv/bin/python -c %s %s", SEND, f"{SIM}/img/street.png")
    assert res.rc == 0, res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed", result
    assert [i["band"] for i in result["items"]] == ["exact", "similar", "style"], result["steps"]
    assert result["items"][0]["matches"][0]["sku_id"] == "EXACT-1"
    row = lab.host("production-db").run(
        "runuser -u postgres -- psql -XAtq -d unde_main -v id=%s -f - <<'UNDE_EOF'\n"
        "SELECT status, items_detected, search_backend FROM recognition_requests WHERE id = :'id';\n"
        "UNDE_EOF",
        result["request_id"],
    )
    assert row.stdout.strip() == "completed|3|conditional"

"""The Redis ACL users roles/redis renders (group_vars/all/redis.yml unde_redis_acl, the lab vault's
passwords), loaded by a real redis-server (>= 7: selectors): each app user SELECTs only its DBs and
touches only its keys and channels, no app user runs an admin or dangerous command, the default user
is off, the exporter only reads server state, and only Patroni's routing user writes ``shard:*``.
Then real app code runs as its user on that server (a Celery worker, a producer, persona's Redis
state, the Ximilar rate limiter) and the server's ACL LOG must stay empty."""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import yaml
from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from ansible.vars.hostvars import HostVars  # type: ignore[import-untyped]
from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]
from celery import Celery
from support import REPO
from unde_common.settings import ENV_FILE_VAR
from unde_testkit.testing import free_port, redis_server, required_env, settings_env
from unde_tools import lab_vault

ROLE = REPO / "roles" / "redis"
LAB_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"
GROUP_VARS = REPO / "group_vars" / "all"
HOSTS = {"hot": "local-redis", "batch": "push"}

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="the test kit's servers ship wheels up to CPython 3.12"
)


def _yaml(name: str) -> Any:
    return yaml.safe_load((GROUP_VARS / name).read_text())


DB = _yaml("redis.yml")["unde_redis_db"]
ACL = _yaml("redis.yml")["unde_redis_acl"]
QUEUES = _yaml("queues.yml")["unde_celery_queues"]


@functools.cache
def _passwords() -> dict[str, str]:
    values: dict[str, str] = lab_vault.decrypt()["vault_redis_acl_passwords"]
    return values


@functools.cache
def _inventory() -> tuple[Any, Any, Any]:
    init_plugin_loader()
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(LAB_INVENTORY)])
    return loader, inventory, VariableManager(loader=loader, inventory=inventory)


def _role_vars(kind: str) -> dict[str, Any]:
    loader, inventory, variables = _inventory()
    host_vars = variables.get_vars(host=inventory.get_host(HOSTS[kind]), include_hostvars=True)
    host_vars["hostvars"] = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    return {
        **loader.load_from_file(str(ROLE / "defaults" / "main.yml"), trusted_as_template=True),
        **host_vars,
        **loader.load_from_file(str(ROLE / "vars" / "Debian.yml"), trusted_as_template=True),
        "ansible_managed": "Ansible managed",
        "unde_redis_acl_passwords": _passwords(),
    }


@functools.cache
def render(kind: str, template: str = "users.acl.j2") -> str:
    """A template of roles/redis as the role renders it on the lab's ``kind`` server."""
    return _render(kind, template)


def _render(kind: str, template: str, **overrides: Any) -> str:
    loader, _, _ = _inventory()
    templar = Templar(loader=loader, variables={**_role_vars(kind), **overrides})
    return str(templar.template(trust_as_template((ROLE / "templates" / template).read_text())))


# --------------------------------------------------------------------------- what each user may do


@dataclass(frozen=True)
class Grants:
    """What the ACL mapping says one user may do on one server."""

    dbs: frozenset[int]
    keys: tuple[str, ...]
    read_keys: tuple[str, ...]
    celery: tuple[str, ...]

    def may_read(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in (*self.keys, *self.read_keys))

    def may_write(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in self.keys)


def grants(user: str, kind: str) -> Grants:
    rows = [g for g in ACL[user].get("grants", []) if g["server"] == kind]
    return Grants(
        dbs=frozenset(DB[d] for g in rows for d in g["dbs"]),
        keys=tuple(k for g in rows for k in g.get("keys", [])),
        read_keys=tuple(k for g in rows for k in g.get("read_keys", [])),
        celery=tuple(QUEUES[q] for g in rows for q in g.get("celery", [])),
    )


def app_users(kind: str) -> list[str]:
    return sorted(u for u in ACL if "grants" in ACL[u] and grants(u, kind).dbs)


def _sample(pattern: str) -> str:
    """A concrete key a pattern matches."""
    return pattern.replace("*", "t").replace("?", "t")


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    kind: str
    port: int

    def client(self, user: str, db: int = 0, **kwargs: Any) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=user,
            password=_passwords()[user],
            db=db,
            socket_timeout=5,
            **kwargs,
        )

    def url(self, user: str, db: int) -> str:
        return f"redis://{user}:{_passwords()[user]}@127.0.0.1:{self.port}/{db}"

    def acl_log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.client("admin").acl_log()
        return entries

    def reset_log(self) -> None:
        self.client("admin").acl_log_reset()


def _serve(kind: str, workdir: Path) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    acl = workdir / "users.acl"
    acl.write_text(render(kind))
    with redis_server(workdir, acl_file=acl, user="admin", password=_passwords()["admin"]) as url:
        yield Server(kind, int(url.rsplit(":", 1)[1].split("/")[0]))


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve("hot", tmp_path_factory.mktemp("redis-hot"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve("batch", tmp_path_factory.mktemp("redis-batch"))


@pytest.fixture
def servers(hot: Server, batch: Server) -> dict[str, Server]:
    return {"hot": hot, "batch": batch}


# --------------------------------------------------------------------------- the rendered files


def test_users_are_the_vault_keys() -> None:
    example = yaml.safe_load((REPO / "vault.example.yml").read_text())
    example_users = set(example["all"]["vars"]["vault_redis_acl_passwords"])
    assert set(ACL) == example_users == set(_passwords())


def test_acl_files_hold_hashes_not_passwords() -> None:
    for kind in HOSTS:
        text = render(kind)
        for user, password in _passwords().items():
            assert password not in text, user
        users = re.findall(r"^user (\S+) ", text, re.MULTILINE)
        assert users[0] == "default" and "default off" in text
        assert set(users) == {"default", "admin", "exporter", *app_users(kind)}
        for line in text.splitlines():
            if line.startswith("user ") and not line.startswith("user default "):
                assert re.search(r" #[0-9a-f]{64} ", line), line


def _preflight(passwords: dict[str, str]) -> tuple[bool, str]:
    """The role's assert on the vault's passwords: (all conditions hold, its fail_msg)."""
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    check = next(t for t in tasks if "ACL user" in t["name"])["ansible.builtin.assert"]
    loader, _, _ = _inventory()
    templar = Templar(loader=loader, variables={**_role_vars("hot"), "unde_redis_acl_passwords": passwords})
    ok = all(templar.evaluate_conditional(trust_as_template(c)) for c in check["that"])
    return ok, str(templar.template(trust_as_template(check["fail_msg"])))


def test_role_refuses_a_vault_without_every_user() -> None:
    assert _preflight(_passwords())[0]
    missing = {k: v for k, v in _passwords().items() if k != "voice"}
    ok, message = _preflight({**missing, "stranger": "x" * 20})
    assert not ok and "missing: voice" in message and "unknown: stranger" in message
    assert not _preflight({**_passwords(), "voice": "short"})[0]


def test_acl_load_handler_applies_a_changed_file_and_keeps_the_data(tmp_path: Path) -> None:
    """The role's handler (redis-cli ACL LOAD as admin, the password in REDISCLI_AUTH) on a real
    server: a rotated app password takes effect at once, the dataset stays (no restart); a server
    that refuses the admin password answers what the handler's restart fallback looks for."""
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    load = next(h for h in handlers if h["name"] == "Load the ACL file")
    acl = tmp_path / "users.acl"
    acl.write_text(render("hot"))
    with redis_server(tmp_path / "r", acl_file=acl, user="admin", password=_passwords()["admin"]) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        server = Server("hot", port)
        server.client("admin", DB["mood_agent"]).set("mood:last:u1", "kept")
        rotated = {**_passwords(), "mood_agent": "rotated-password-0123456789"}
        acl.write_text(_render("hot", "users.acl.j2", unde_redis_acl_passwords=rotated))
        loader, _, _ = _inventory()

        def run_handler(passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
            variables = {**_role_vars("hot"), "redis_port": port, "unde_redis_acl_passwords": passwords}
            templar = Templar(loader=loader, variables=variables)
            argv = [
                str(templar.template(trust_as_template(str(a))))
                for a in load["ansible.builtin.command"]["argv"]
            ]
            env = {k: str(templar.template(trust_as_template(v))) for k, v in load["environment"].items()}
            assert passwords["admin"] not in " ".join(argv)
            return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=30)

        assert run_handler(_passwords()).stdout.strip() == "OK"
        fresh = redis.Redis(
            host="127.0.0.1",
            port=port,
            username="mood_agent",
            password=rotated["mood_agent"],
            db=DB["mood_agent"],
        )
        assert fresh.get("mood:last:u1") == b"kept"
        with pytest.raises(redis.exceptions.AuthenticationError):
            server.client("mood_agent").ping()
        refused = run_handler({**_passwords(), "admin": "not-the-admin-password"})
        assert re.search("WRONGPASS|NOAUTH", refused.stdout + refused.stderr), refused


def test_exporter_and_config_carry_no_password() -> None:
    conf = render("hot", "redis.conf.j2")
    assert "requirepass" not in conf and "aclfile /etc/redis/users.acl" in conf
    exporter = render("hot", "redis_exporter.default.j2")
    assert 'REDIS_USER="exporter"' in exporter
    assert f'REDIS_PASSWORD="{_passwords()["exporter"]}"' in exporter


def _redis_targets(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("redis"), dict):
            yield node["redis"]
        for value in node.values():
            yield from _redis_targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _redis_targets(value)


def _role_redis_targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.parent.parent.name, target)
        for path in sorted((REPO / "roles").glob("*/vars/main.yml"))
        for target in _redis_targets(yaml.safe_load(path.read_text()))
    ]


def test_every_role_redis_url_names_a_user_allowed_there() -> None:
    """Each Redis URL a role writes (templates/urls.j2 targets in its vars) authenticates as the
    role's ACL user, and that user may SELECT the target's DB on the target's server."""
    targets = _role_redis_targets()
    assert len(targets) >= 12
    for role, target in targets:
        defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
        assert target.get("user") == f"{{{{ {role}_redis_user }}}}", role
        user = defaults[f"{role}_redis_user"]
        assert user in ACL, role
        db_expr = str(target["db"])
        if f"{role}_redis_db" in db_expr:
            db_expr = str(defaults[f"{role}_redis_db"])
        found = re.search(r"unde_redis_db\.(\w+)", db_expr)
        assert found, (role, db_expr)
        kind = {"redis_hot": "hot", "redis_batch": "batch"}[target["service"]]
        assert DB[found.group(1)] in grants(user, kind).dbs, (role, found.group(1), kind)
        assert f"unde_redis_acl_passwords[{role}_redis_user]" in str(defaults[f"{role}_redis_password"])


def test_patroni_routing_writes_as_its_user() -> None:
    defaults = yaml.safe_load((REPO / "roles/patroni/defaults/main.yml").read_text())
    assert defaults["patroni_routing_redis_user"] == "patroni_routing"
    assert (
        "unde_redis_acl_passwords[patroni_routing_redis_user]" in defaults["patroni_routing_redis_password"]
    )
    script = (REPO / "roles/patroni/templates/patroni-routing.j2").read_text()
    assert 'username=conf["redis_user"]' in script


# --------------------------------------------------------------------------- per user, per server

DENIED_COMMANDS = [
    ("CONFIG", "GET", "requirepass"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("FLUSHDB",),
    ("FLUSHALL",),
    ("KEYS", "*"),
    ("SHUTDOWN", "NOSAVE"),
    ("DEBUG", "SLEEP", "0"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("CLIENT", "LIST"),
    ("SCRIPT", "FLUSH"),
    ("ACL", "LIST"),
    ("SAVE",),
    ("MIGRATE", "127.0.0.1", "1", "k", "0", "1"),
    ("REPLICAOF", "127.0.0.1", "1"),
]


def _cmd(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def _denied(client: redis.Redis, *command: Any) -> bool:
    try:
        _cmd(client, *command)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:  # refused before the ACL check (DEBUG)
        return "not allowed" in str(exc)
    return False


def _cases() -> list[tuple[str, str]]:
    return [(kind, user) for kind in HOSTS for user in app_users(kind)]


@pytest.mark.parametrize(("kind", "user"), _cases())
def test_app_user_selects_only_its_dbs(servers: dict[str, Server], kind: str, user: str) -> None:
    mine = grants(user, kind).dbs
    client = servers[kind].client(user)
    for db in range(16):
        if db in mine:
            assert _cmd(client, "SELECT", db) in (True, b"OK", "OK"), db
        else:
            assert _denied(client, "SELECT", db), f"{user} may SELECT {db} on {kind}"


@pytest.mark.parametrize(("kind", "user"), _cases())
def test_app_user_uses_its_keys(servers: dict[str, Server], kind: str, user: str) -> None:
    g = grants(user, kind)
    for db in sorted(g.dbs):
        client = servers[kind].client(user, db)
        for pattern in g.keys:
            key = _sample(pattern)
            client.set(key, "v", ex=60)
            assert client.get(key) == b"v"
            client.delete(key)
        for pattern in g.read_keys:
            key = _sample(pattern)
            client.get(key)
            client.hgetall(key)
            assert _denied(client, "SET", key, "v"), f"{user} may write {key}"
            assert _denied(client, "DEL", key), f"{user} may delete {key}"


@pytest.mark.parametrize(("kind", "user"), _cases())
def test_app_user_cannot_touch_other_apps_keys(servers: dict[str, Server], kind: str, user: str) -> None:
    mine = grants(user, kind)
    client = servers[kind].client(user, min(mine.dbs))
    others = {
        _sample(p)
        for other in ACL
        if other != user and "grants" in ACL[other]
        for p in (*grants(other, kind).keys, *grants(other, kind).read_keys)
    }
    checked = 0
    for key in sorted(others):
        if not mine.may_read(key):
            assert _denied(client, "GET", key), f"{user} may read {key}"
            checked += 1
        if not mine.may_write(key):
            assert _denied(client, "SET", key, "v"), f"{user} may write {key}"
    assert checked > 0


def _channels(kind: str, user: str) -> list[str]:
    """The channel patterns the rendered ACL file gives ``user`` on ``kind``."""
    for line in render(kind).splitlines():
        if line.startswith(f"user {user} "):
            return [token[1:] for token in line.split() if token.startswith("&")]
    return []


@pytest.mark.parametrize(("kind", "user"), _cases())
def test_app_user_publishes_only_on_its_channels(servers: dict[str, Server], kind: str, user: str) -> None:
    mine = _channels(kind, user)
    client = servers[kind].client(user, min(grants(user, kind).dbs))
    for pattern in mine:
        client.publish(_sample(pattern), "probe")
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.psubscribe(pattern)  # kombu PSUBSCRIBEs its fanout channel: listed literally
        assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
        pubsub.close()
    for other in ACL:
        for pattern in _channels(kind, other) if other not in (user, "admin") else []:
            channel = _sample(pattern)
            if not any(fnmatch.fnmatchcase(channel, p) for p in mine):
                assert _denied(client, "PUBLISH", channel, "x"), f"{user} may publish on {channel}"


@pytest.mark.parametrize(("kind", "user"), _cases())
def test_app_user_runs_no_admin_command(servers: dict[str, Server], kind: str, user: str) -> None:
    client = servers[kind].client(user, min(grants(user, kind).dbs))
    admin = servers[kind].client("admin")
    for command in DENIED_COMMANDS:
        # ACL DRYRUN: the server's own verdict, also for a command refused before the ACL check
        # (DEBUG: enable-debug-command) or renamed away in production (FLUSHALL, DEBUG)
        verdict = _cmd(admin, "ACL", "DRYRUN", user, *command)
        assert verdict not in (b"OK", "OK", True), f"{user} may run {command[0]} on {kind}"
        assert _denied(client, *command), f"{user} may run {command[0]} on {kind}"
    assert servers[kind].client("admin").ping()  # nobody shut it down


@pytest.mark.parametrize("kind", list(HOSTS))
def test_default_user_is_off(servers: dict[str, Server], kind: str) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=servers[kind].port, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    for password in ("", "nopass", _passwords()["admin"]):
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(
                host="127.0.0.1", port=servers[kind].port, username="default", password=password or "x"
            ).ping()


@pytest.mark.parametrize("kind", list(HOSTS))
def test_exporter_reads_server_state_only(servers: dict[str, Server], kind: str) -> None:
    exporter = servers[kind].client("exporter")
    assert "redis_version" in exporter.info()
    assert exporter.config_get("maxmemory")
    exporter.slowlog_get()
    _cmd(exporter, "LATENCY", "LATEST")
    assert _cmd(exporter, "CLIENT", "LIST")
    assert _cmd(exporter, "SELECT", 12) in (True, b"OK", "OK")
    exporter.dbsize()
    for command in [
        ("GET", "shard:0"),
        ("SET", "x", "1"),
        ("HSET", "shard:0", "host", "evil"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("SLOWLOG", "RESET"),
        ("CLIENT", "KILL", "TYPE", "normal"),
        ("PUBLISH", "persona:invalidate", "u 1"),
    ]:
        assert _denied(exporter, *command), command


def _exporter_binary() -> str:
    found = shutil.which("prometheus-redis-exporter") or shutil.which("redis_exporter")
    if found is None:
        raise RuntimeError("no prometheus-redis-exporter: install the Debian package (make setup-apt)")
    return found


@pytest.mark.parametrize("kind", list(HOSTS))
def test_redis_exporter_scrapes_as_its_user(servers: dict[str, Server], kind: str) -> None:
    """The distribution's redis_exporter with the role's settings (REDIS_USER/REDIS_PASSWORD, as
    the role's /etc/default file gives them) reports redis_up 1 and the server denies it nothing."""
    server = servers[kind]
    server.reset_log()
    port = free_port()
    args = [
        _exporter_binary(),
        f"-web.listen-address=127.0.0.1:{port}",
        f"-redis.addr=redis://127.0.0.1:{server.port}",
    ]
    env = {**os.environ, "REDIS_USER": "exporter", "REDIS_PASSWORD": _passwords()["exporter"]}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "redis_up 1" in body, output[-3000:]
    assert "redis_connected_clients" in body and "redis_config_maxclients" in body, output[-3000:]
    _no_denials(server)


def test_only_patroni_routing_writes_shard_routing(hot: Server) -> None:
    db = DB["shard_routing"]
    patroni = hot.client("patroni_routing", db)
    # the routing callback's way: a compare-and-set Lua script
    script = "redis.call('HSET', KEYS[1], 'host', ARGV[1], 'port', ARGV[2]) return 1"
    assert patroni.eval(script, 1, "shard:0", "198.18.2.10", "6432") == 1
    writers = []
    for user in app_users("hot"):
        if db not in grants(user, "hot").dbs or user == "patroni_routing":
            continue
        client = hot.client(user, db)
        assert client.hgetall("shard:0") == {b"host": b"198.18.2.10", b"port": b"6432"}, user
        for command in [
            ("HSET", "shard:0", "host", "evil"),
            ("DEL", "shard:0"),
            ("RENAME", "shard:0", "shard:9"),
            ("EVAL", script, "1", "shard:0", "evil", "1"),
        ]:
            if not _denied(client, *command):
                writers.append((user, command[0]))
    assert writers == []
    assert hot.client("patroni_routing", db).hget("shard:0", "host") == b"198.18.2.10"
    readers = {u for u in app_users("hot") if db in grants(u, "hot").dbs} - {"patroni_routing"}
    assert {"persona_agent", "api_gateway", "llm_orchestrator"} <= readers


# --------------------------------------------------------------------------- real app code


def _no_denials(server: Server) -> None:
    log = server.acl_log()
    assert log == [], [(e.get("username"), e.get("reason"), e.get("object")) for e in log]


def test_persona_redis_state_as_its_user(hot: Server) -> None:
    """Persona's own Redis code (idempotency, signal buffer, per-user lock with its Lua release,
    the invalidation publish inside the flush and its subscription) as persona_agent, and the
    routing entry read the way ShardRouter reads it."""
    from persona_agent.concurrency import UserLocks
    from persona_agent.idempotency import Idempotency
    from persona_agent.service import INVALIDATION_CHANNEL, PersonaService, ServiceConfig
    from persona_agent.signal_buffer import BufferedSignal, RedisSignalBuffer

    hot.reset_log()

    async def scenario() -> None:
        r = aioredis.Redis.from_url(hot.url("persona_agent", DB["persona_agent"]))
        routing = aioredis.Redis.from_url(hot.url("persona_agent", DB["shard_routing"]))
        try:
            idem = Idempotency(r)
            assert await idem.claim("signal:s1")
            await idem.store_result("flush:u1:e1", {"ok": True})
            assert await Idempotency(r).result("flush:u1:e1") == {"ok": True}
            await idem.release("signal:s1")
            buffer = RedisSignalBuffer(r)
            await buffer.add("u1", BufferedSignal("s1", "e1", "like", 0.5, 1.0))
            signals, _ = await buffer.take("u1", "e1", 600)
            assert [s.signal_id for s in signals] == ["s1"]
            await buffer.drop("u1", ["e1"])
            async with UserLocks(r).hold("u1"):
                assert await r.exists("persona:lock:u1")
            assert not await r.exists("persona:lock:u1")
            service = PersonaService(store=None, redis=r, config=ServiceConfig())  # type: ignore[arg-type]
            pubsub = r.pubsub()
            await pubsub.subscribe(INVALIDATION_CHANNEL)
            await service._bump("u1", None)  # type: ignore[arg-type]
            message = None
            for _ in range(50):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    break
            assert message is not None and message["data"] == b"u1 1"
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await routing.hgetall("shard:0")
        finally:
            await r.aclose()
            await routing.aclose()

    asyncio.run(scenario())
    _no_denials(hot)


def test_ximilar_rate_limiter_as_its_user(batch: Server) -> None:
    """The shared token bucket (a Lua script loaded on NOSCRIPT) as ximilar_gw."""
    from ximilar_gw.rate_limiter import RedisRateLimiter

    batch.reset_log()
    client = aioredis.Redis.from_url(batch.url("ximilar_gw", DB["recognition"]))

    async def scenario() -> None:
        try:
            limiter = RedisRateLimiter(client, "ximilar", rate=10, burst=5)
            await limiter.acquire()
            await limiter.acquire()
        finally:
            await client.aclose()

    asyncio.run(scenario())
    _no_denials(batch)


WORKERS = [
    # (app, settings class, broker env names, the server, the producer's user)
    ("llm_orchestrator", "llm_orchestrator.settings:LlmOrchestratorSettings",
     ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"), "hot", "api_gateway"),
    ("recognition", "recognition.settings:RecognitionSettings",
     ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"), "batch", "api_gateway"),
    ("scraper", "scraper.settings:ScraperSettings", ("REDIS_URL",), "batch", "scraper"),
    ("embed_batch", "embed_batch.settings:EmbedBatchSettings", ("REDIS_URL",), "batch", "embed_batch"),
]  # fmt: skip


@pytest.mark.parametrize(("app", "settings_path", "broker_env", "kind", "producer"), WORKERS)
def test_celery_worker_as_its_user(
    servers: dict[str, Server],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    app: str,
    settings_path: str,
    broker_env: tuple[str, ...],
    kind: str,
    producer: str,
) -> None:
    """The app's worker (as in production: remote control on) runs against its DB as its user and
    takes a task a producer (the app itself, or the API gateway for the dialogue and recognition
    queues) sent through kombu; the server denies no command."""
    module, _, cls = settings_path.partition(":")
    settings_cls = getattr(importlib.import_module(module), cls)
    server = servers[kind]
    db, queue = DB[app], QUEUES[app]
    server.reset_log()
    env = {**required_env(settings_cls), **dict.fromkeys(broker_env, server.url(app, db))}
    env_file = settings_env(monkeypatch, tmp_path, settings_cls, {**env, "METRICS_ENABLED": "false"})
    sender = Celery("producer", broker=server.url(producer, db))
    sender.conf.broker_connection_retry_on_startup = True
    # an unregistered task: the worker receives it, logs it, rejects and acknowledges it
    sender.send_task("acl.probe", queue=queue, routing_key=queue)
    sender.close()
    admin = server.client("admin", db)
    assert admin.llen(queue) == 1
    args = [sys.executable, "-m", "celery", "-A", f"{app}.celery_app", "worker", "-Q", queue]
    args += ["--pool", "solo", "--without-mingle", "--without-gossip"]
    proc = subprocess.Popen(
        args,
        env={**os.environ, ENV_FILE_VAR: str(env_file)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if admin.llen(queue) == 0 and not admin.hlen("unacked"):
                break
            time.sleep(0.1)
        time.sleep(0.5)  # the ack and the remote-control subscription settle
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    denied = [(e.get("username"), e.get("reason"), e.get("object")) for e in server.acl_log()]
    assert admin.llen(queue) == 0 and not admin.hlen("unacked"), (denied, output[-3000:])
    assert "acl.probe" in output, (denied, output[-3000:])
    _no_denials(server)

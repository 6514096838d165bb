"""A shard as production runs it, on loopback: a PostgreSQL 16 primary and a streaming hot standby
(tests and benches; never imported by app code)::

    with ReplicatedShard(work / "shard") as shard:
        with psycopg.connect(shard.primary_dsn) as conn: ...     # TCP + SCRAM on 127.0.0.1
        shard.wait_replayed()                                     # the standby has replayed it all
        shard.kill_primary()                                      # SIGKILL of the postmaster
        shard.promote()                                           # the standby accepts writes
        redis.hset("shard:0", mapping=shard.routing_entry())      # what the Patroni callback writes

Built from the ``pgserver`` wheel's binaries (``initdb``, ``pg_ctl``, ``pg_basebackup``, ``postgres``):

- the primary: ``initdb`` with data checksums (Patroni's ``use_pg_rewind``), SCRAM over TCP and
  trust on its own Unix socket; the replication settings of the ``shard_nvme`` profile of
  roles/postgresql (``wal_level replica``, ``synchronous_commit local``: asynchronous streaming as
  Patroni runs it without ``synchronous_mode``), a replication user ``replicator`` and a physical
  replication slot for the standby (Patroni's ``use_slots``);
- the database ``database`` created and migrated with the repository's migrations
  (``files/sql/<schema>``, the postgresql role's runner) unless ``schema`` is None;
- the standby: ``pg_basebackup -R -S <slot>`` of the primary, started as a hot standby streaming
  from it.

Each server listens on 127.0.0.1 on a free port and on a Unix socket in a short directory of its
own. :attr:`ReplicatedShard.primary_dsn` (superuser ``postgres`` with a password, over TCP) follows
:meth:`ReplicatedShard.promote`. As root the servers run as the system user ``pgserver`` (the
user pgserver itself creates). Both servers are stopped on exit (SIGKILL of whatever is still
running after ``pg_ctl stop -m immediate``); their logs are in ``<workdir>/<member>.log``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

from unde_testkit.loaders import repo_root, sql_runner
from unde_testkit.testing import free_port

__all__ = ["REPLICATION_USER", "Member", "ReplicatedShard", "pg_bin"]

REPLICATION_USER = "replicator"
SUPERUSER = "postgres"
_SYSTEM_USER = "pgserver"
#: replication settings of roles/postgresql's shard_nvme profile, sized for a test machine
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "max_replication_slots": "5",
    "wal_keep_size": "'256MB'",
    "hot_standby": "on",
    "synchronous_commit": "local",
    "fsync": "on",
    "full_page_writes": "on",
    "shared_buffers": "'128MB'",
    "max_connections": "100",
    "password_encryption": "'scram-sha-256'",
    "wal_receiver_status_interval": "'1s'",
    "wal_retrieve_retry_interval": "'1s'",
}


def pg_bin(name: str) -> Path:
    """A binary of the pgserver wheel's PostgreSQL (``initdb``, ``pg_ctl``, ``pg_basebackup``, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH) / name


@dataclass
class Member:
    """One server of the shard."""

    name: str
    pgdata: Path
    port: int
    socket_dir: Path
    log: Path

    @property
    def address(self) -> str:
        """``host:port`` (the form of SHARD_MEMBERS' ``<index>@<host>:<port>``)."""
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid), None when it is not there."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


class ReplicatedShard:
    """A primary + streaming hot standby (module docstring). ``workdir`` holds both data
    directories and the logs (removed on exit unless ``keep``)."""

    def __init__(
        self,
        workdir: Path,
        *,
        database: str = "unde_shard",
        schema: str | None = "unde_shard",
        slot: str = "standby_1",
        start_timeout_s: float = 60.0,
        keep: bool = False,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.database = database
        self.schema = schema
        self.slot = slot
        self.start_timeout_s = start_timeout_s
        self.keep = keep
        self.password = secrets.token_urlsafe(18)
        self.replication_password = secrets.token_urlsafe(18)
        self.members: list[Member] = []
        self.primary_index = 0
        self.promoted = False
        self._sockets: list[Path] = []
        self._run_as: str | None = _SYSTEM_USER if os.geteuid() == 0 else None

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        primary, standby = (self._member(name) for name in ("pg-a", "pg-b"))
        self.members = [primary, standby]
        self._initdb(primary)
        self._start(primary)
        with self._socket_conn(primary) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(self.password)
                )
            )
            conn.execute(
                sql.SQL("CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
                    sql.Identifier(REPLICATION_USER), sql.Literal(self.replication_password)
                )
            )
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (self.slot,))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        if self.schema is not None:
            self._migrate(primary)
        self._basebackup(primary, standby)
        self._start(standby)
        self.wait_streaming()
        self.wait_replayed()

    def stop(self) -> None:
        """Stop both servers (immediate; SIGKILL after) and remove the work dir unless ``keep``."""
        for member in self.members:
            pid = member.pid()
            if pid is None or not _alive(pid):
                continue
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
                self._pg(["pg_ctl", "-D", str(member.pgdata), "-m", "immediate", "-w", "-t", "20", "stop"])
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for path in self._sockets:
            shutil.rmtree(path, ignore_errors=True)
        self._sockets.clear()
        if not self.keep:
            for member in self.members:
                shutil.rmtree(member.pgdata, ignore_errors=True)

    # ------------------------------------------------------------------ the members

    @property
    def primary(self) -> Member:
        return self.members[self.primary_index]

    @property
    def standby(self) -> Member:
        return self.members[1 - self.primary_index]

    def dsn(self, member: Member, database: str | None = None) -> str:
        """Superuser DSN of ``member`` over TCP (SCRAM)."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{member.port}/{database or self.database}"

    @property
    def primary_dsn(self) -> str:
        """The current primary's DSN (the standby's after :meth:`promote`)."""
        return self.dsn(self.primary)

    @property
    def standby_dsn(self) -> str:
        return self.dsn(self.standby)

    @property
    def shard_members(self) -> list[str]:
        """SHARD_MEMBERS items of shard 0 (both servers): ``0@127.0.0.1:<port>``."""
        return [f"0@{m.address}" for m in self.members]

    # ------------------------------------------------------------------ faults

    def kill_primary(self) -> int:
        """SIGKILL the primary's postmaster (a crash: its backends lose their parent and exit, shared
        memory is not flushed); returns the pid killed. The standby's WAL receiver loses its stream."""
        member = self.primary
        pid = member.pid()
        if pid is None:
            raise RuntimeError(f"{member.name} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        # the orphaned backends notice the postmaster's death and exit; wait until the port is free
        while _port_open(member.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid

    def cut_stream(self, timeout_s: float = 10.0) -> str:
        """Stop the standby's WAL receiver (``primary_conninfo`` emptied and reloaded), as a WAN
        that stops carrying WAL would: what the primary commits from now on is not on the standby.
        Returns the standby's last received LSN."""
        member = self.standby
        with psycopg.connect(self.dsn(member), autocommit=True, connect_timeout=3) as conn:
            conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout_s
            while conn.execute("SELECT count(*) FROM pg_stat_wal_receiver").fetchone() != (0,):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the WAL receiver of {member.name} is still running")
                time.sleep(0.02)
            row = conn.execute("SELECT pg_last_wal_receive_lsn()::text").fetchone()
        return str(row[0]) if row else ""

    def promote(self, timeout_s: float = 30.0) -> None:
        """``pg_ctl promote`` of the standby; returns once it accepts a write over TCP.
        :attr:`primary_dsn` names it from then on."""
        target = self.standby
        self._pg(["pg_ctl", "-D", str(target.pgdata), "-w", "-t", str(int(timeout_s)), "promote"])
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.dsn(target), connect_timeout=2, autocommit=True) as conn:
                    in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if in_recovery is not None and not in_recovery[0]:
                        conn.execute("SELECT txid_current()")  # a transaction id: writes are allowed
                        break
            except psycopg.Error:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.name} did not accept writes {timeout_s} s after promote")
            time.sleep(0.05)
        self.primary_index = self.members.index(target)
        self.promoted = True

    # ------------------------------------------------------------------ routing and replication state

    def timeline(self, member: Member | None = None) -> int:
        """The timeline ``member`` (default: the primary) writes WAL on."""
        with psycopg.connect(self.dsn(member or self.primary), autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)"
                " ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def system_identifier(self) -> str:
        with psycopg.connect(self.primary_dsn, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        assert row is not None
        return str(row[0])

    def routing_entry(self) -> dict[str, str]:
        """The ``shard:<n>`` hash the Patroni routing callback writes for the current primary
        (roles/patroni patroni-routing: host, port, member, timeline, updated_at, pgbouncer_port,
        sysid; no PgBouncer here)."""
        member = self.primary
        return {
            "host": "127.0.0.1",
            "port": str(member.port),
            "member": member.name,
            "timeline": str(self.timeline()),
            "updated_at": str(int(time.time())),
            "pgbouncer_port": "0",
            "sysid": self.system_identifier(),
        }

    def wait_streaming(self, timeout_s: float = 30.0) -> None:
        """Until the primary reports the standby as a streaming WAL sender."""
        deadline = time.monotonic() + timeout_s
        while True:
            with psycopg.connect(self.primary_dsn, autocommit=True, connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            if row and row[0] > 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby is not streaming after {timeout_s} s: {self.log_tail()}")
            time.sleep(0.05)

    def wait_replayed(self, timeout_s: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary_dsn, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
        deadline = time.monotonic() + timeout_s
        while True:
            with psycopg.connect(self.standby_dsn, autocommit=True, connect_timeout=3) as conn:
                done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
            if done and done[0]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby has not replayed {target} after {timeout_s} s")
            time.sleep(0.02)

    def log_tail(self, chars: int = 2000) -> str:
        return "\n".join(
            f"--- {m.name} ---\n{m.log.read_text(errors='replace')[-chars:]}"
            for m in self.members
            if m.log.exists()
        )

    # ------------------------------------------------------------------ internals

    def _prepare_user(self) -> None:
        if self._run_as is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )
        import stat

        ensure_user_exists(self._run_as)
        ensure_prefix_permissions(self.workdir)
        bin_dir = pg_bin("initdb").parent
        ensure_prefix_permissions(bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir.parent / "lib", read)
        self._chown(self.workdir)

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            shutil.chown(path, self._run_as, self._run_as)

    def _member(self, name: str) -> Member:
        sockets = Path(tempfile.mkdtemp(prefix="pgr-"))  # short: a socket path has ~107 bytes at most
        self._sockets.append(sockets)
        self._chown(sockets)
        log = self.workdir / f"{name}.log"
        log.touch()
        self._chown(log)
        return Member(name, self.workdir / name, free_port(), sockets, log)

    def _pg(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary (as the system user when root); raises with its output."""
        cmd = [str(pg_bin(args[0])), *args[1:]]
        try:
            return subprocess.run(
                cmd, check=True, capture_output=True, text=True, user=self._run_as, timeout=120, **kwargs
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{args[0]} failed ({exc.returncode}): {exc.stdout}\n{exc.stderr}") from exc

    def _initdb(self, member: Member) -> None:
        pwfile = self.workdir / ".pw"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        pwfile.chmod(0o600)
        try:
            self._pg(
                [
                    "initdb", "-D", str(member.pgdata), "-U", SUPERUSER, "--pwfile", str(pwfile),
                    "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                    "--data-checksums", "--no-instructions",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with (member.pgdata / "postgresql.auto.conf").open("a") as conf:
            conf.write("".join(f"{k} = {v}\n" for k, v in _SETTINGS.items()))

    def _start(self, member: Member) -> None:
        options = f"-p {member.port} -k {member.socket_dir}"
        self._pg(
            ["pg_ctl", "-D", str(member.pgdata), "-l", str(member.log), "-o", options, "-w",
             "-t", str(int(self.start_timeout_s)), "start"]
        )  # fmt: skip

    @contextlib.contextmanager
    def _socket_conn(self, member: Member, database: str = "postgres") -> Any:
        with psycopg.connect(
            host=str(member.socket_dir), port=member.port, user=SUPERUSER, dbname=database, autocommit=True
        ) as conn:
            yield conn

    def _migrate(self, member: Member) -> None:
        """files/sql/<schema> with the postgresql role's runner, over the primary's socket."""
        directory = repo_root() / "files/sql" / str(self.schema)
        if not directory.is_dir():
            raise ValueError(f"no migrations directory files/sql/{self.schema}")
        runner = sql_runner()
        run = runner.subprocess_runner(
            runner.Connection(
                database=self.database, host=str(member.socket_dir), port=member.port, user=SUPERUSER
            ),
            psql=str(pg_bin("psql")),
            timeout=120,
        )
        runner.migrate(run, directory)

    def _basebackup(self, primary: Member, standby: Member) -> None:
        # the password through the environment: -R writes it into the standby's primary_conninfo
        self._pg(
            [
                "pg_basebackup", "-D", str(standby.pgdata), "-h", "127.0.0.1", "-p", str(primary.port),
                "-U", REPLICATION_USER, "-R", "-S", self.slot, "-X", "stream", "-c", "fast", "-w",
            ],
            env={**os.environ, "PGPASSWORD": self.replication_password},
        )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0

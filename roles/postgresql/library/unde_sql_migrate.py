#!/usr/bin/python
"""Ansible module ``unde_sql_migrate``: apply versioned SQL migrations through ``psql``.

The core (discovery, planning, applying) is plain Python around a ``RunPsql`` callable, so the
tests drive it against a real PostgreSQL without Ansible; :func:`main` is the module wrapper.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
---
module: unde_sql_migrate
short_description: Apply versioned SQL migrations to a PostgreSQL database with psql
description:
  - Applies every C(NNNN_description.sql) file of O(migrations_dir) that is not yet recorded in
    C(public.schema_migrations), in file-name order.
  - Each file runs with C(psql -X -v ON_ERROR_STOP=1 --single-transaction) together with the
    INSERT of its bookkeeping row, so a file is either applied and recorded, or not at all.
    The target host needs C(psql) only, no Python database driver.
  - A file that was applied before and whose SHA-256 changed stops the run with an error that
    names the file and both checksums (migrations are immutable; add a new one instead).
  - A file that sorts before the newest applied one is refused unless O(allow_out_of_order).
  - Files must not contain transaction control (BEGIN, COMMIT, ROLLBACK) or C(\connect);
    the module wraps them. Sub-directories (for example C(queries/)) are ignored.
  - Supports check mode; the C(schema_migrations) table is not created in check mode.
version_added: "1.0.0"
author: UNDE infrastructure
options:
  database:
    description: Database to migrate (exported to psql as PGDATABASE).
    type: str
    required: true
  migrations_dir:
    description: Directory on the target host that holds the C(NNNN_*.sql) files.
    type: path
    required: true
  os_user:
    description:
      - Run psql as this OS user (through C(runuser)) when the module runs as root, for example
        C(postgres) for peer authentication over the local socket. Empty runs psql as the
        module's own user.
    type: str
    default: ""
  psql:
    description: psql executable.
    type: str
    default: psql
  login_host:
    description: Host name or socket directory (PGHOST). Empty uses psql's default socket.
    type: str
    default: ""
  login_port:
    description: Port (PGPORT).
    type: int
    default: 5432
  login_user:
    description: Database user (PGUSER). Empty uses psql's default (the OS user name).
    type: str
    default: ""
  login_password:
    description: Password (PGPASSWORD, never on the command line).
    type: str
    default: ""
  allow_out_of_order:
    description: Apply pending files that sort before the newest applied file.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Copy the unde_shard migrations
  ansible.builtin.copy:
    src: "{{ playbook_dir }}/../files/sql/unde_shard/"
    dest: /opt/unde/sql/unde_shard/
    owner: root
    group: root
    mode: "0644"

- name: Apply the unde_shard migrations as the postgres OS user (peer auth)
  unde_sql_migrate:
    database: unde_shard
    migrations_dir: /opt/unde/sql/unde_shard
    os_user: postgres
  register: unde_shard_migrations

- name: Apply over TCP with a password
  unde_sql_migrate:
    database: unde_main
    migrations_dir: /opt/unde/sql/unde_main
    login_host: 127.0.0.1
    login_port: 5432
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
"""

RETURN = r"""
applied:
  description: Files applied by this run, in order (in check mode, the files that would be).
  returned: always
  type: list
  elements: str
  sample: ["0001_staging_schema.sql", "0002_staging_grants.sql"]
already_applied:
  description: Files of the directory that were applied before this run.
  returned: always
  type: list
  elements: str
unknown_applied:
  description: Files recorded in schema_migrations that are not in the directory (a warning).
  returned: always
  type: list
  elements: str
"""

MIGRATION_RE = re.compile(r"^(?P<version>\d{4})_[a-z0-9][a-z0-9_]*\.sql$")
TRANSACTION_CONTROL_RE = re.compile(
    r"^\s*(?:BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|ABORT)\s*(?:WORK|TRANSACTION)?\s*;"
    r"|^\s*\\(?:c|connect)\b",
    re.IGNORECASE | re.MULTILINE,
)
BOOKKEEPING_TABLE = "public.schema_migrations"
# Serialises concurrent runners on one database (arbitrary constant: "unde" in ASCII).
ADVISORY_LOCK_KEY = 0x756E6465

CREATE_TABLE_SQL = f"""CREATE TABLE IF NOT EXISTS {BOOKKEEPING_TABLE} (
    filename   text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {BOOKKEEPING_TABLE} FROM PUBLIC;"""


class MigrationError(Exception):
    """A migration could not be planned or applied; the message names the file.

    ``applied`` lists the files this run had applied (and committed) before the failure.
    """

    def __init__(self, message: str, applied: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.applied = list(applied)


@dataclass(frozen=True)
class PsqlResult:
    rc: int
    stdout: str
    stderr: str


# run_psql(arguments after the psql executable, standard input or None) -> result
RunPsql = Callable[[Sequence[str], str | None], PsqlResult]


@dataclass(frozen=True)
class Migration:
    filename: str
    path: Path
    checksum: str
    sql: str


@dataclass
class MigrateResult:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    unknown_applied: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)


BASE_ARGS: tuple[str, ...] = ("-X", "-q", "-v", "ON_ERROR_STOP=1", "-P", "pager=off")


def checksum_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def discover(directory: Path) -> list[Migration]:
    """The ``NNNN_*.sql`` files of ``directory`` in order; refuse badly named or unsafe ones."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations: list[Migration] = []
    versions: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not path.name.endswith(".sql"):
            continue
        match = MIGRATION_RE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration files must be named NNNN_description.sql (lower case, digits, _)"
            )
        version = match.group("version")
        if version in versions:
            raise MigrationError(f"{path.name}: version {version} is also used by {versions[version]}")
        versions[version] = path.name
        data = path.read_bytes()
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"{path.name}: not UTF-8 ({exc})") from exc
        bad = TRANSACTION_CONTROL_RE.search(_strip_comments(sql))
        if bad is not None:
            raise MigrationError(
                f"{path.name}: contains {bad.group(0).strip()!r}; the runner wraps each file in one "
                "transaction, so files must not control transactions or switch databases"
            )
        migrations.append(Migration(path.name, path, checksum_of(data), sql))
    return migrations


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _check(result: PsqlResult, what: str) -> str:
    if result.rc != 0:
        raise MigrationError(f"{what} failed (psql exit {result.rc}): {result.stderr.strip()}")
    return result.stdout


def table_exists(run_psql: RunPsql) -> bool:
    out = _check(
        run_psql([*BASE_ARGS, "-At", "-c", f"SELECT to_regclass('{BOOKKEEPING_TABLE}') IS NOT NULL"], None),
        f"looking up {BOOKKEEPING_TABLE}",
    )
    return out.strip() == "t"


def ensure_table(run_psql: RunPsql) -> None:
    _check(run_psql([*BASE_ARGS, "-c", CREATE_TABLE_SQL], None), f"creating {BOOKKEEPING_TABLE}")


def applied_checksums(run_psql: RunPsql) -> dict[str, str]:
    """filename -> checksum of every recorded migration ({} when the table does not exist)."""
    if not table_exists(run_psql):
        return {}
    out = _check(
        run_psql(
            [*BASE_ARGS, "-c", f"COPY (SELECT filename, checksum FROM {BOOKKEEPING_TABLE}) TO STDOUT"],  # noqa: S608
            None,
        ),
        f"reading {BOOKKEEPING_TABLE}",
    )
    applied: dict[str, str] = {}
    for line in out.splitlines():
        if line:
            filename, _, checksum = line.partition("\t")
            applied[filename] = checksum
    return applied


def plan(
    migrations: Sequence[Migration], applied: Mapping[str, str], *, allow_out_of_order: bool = False
) -> tuple[list[Migration], MigrateResult]:
    """Pending migrations, in order; refuse edited or out-of-order files."""
    result = MigrateResult()
    names = {m.filename for m in migrations}
    result.unknown_applied = sorted(set(applied) - names)
    pending: list[Migration] = []
    for migration in migrations:
        recorded = applied.get(migration.filename)
        if recorded is None:
            pending.append(migration)
        elif recorded != migration.checksum:
            raise MigrationError(
                f"{migration.filename} was already applied with checksum {recorded}, but the file now "
                f"has checksum {migration.checksum}: applied migrations are immutable, add a new "
                "migration instead"
            )
        else:
            result.already_applied.append(migration.filename)
    newest = max(applied, default="")
    late = [m.filename for m in pending if m.filename < newest]
    if late and not allow_out_of_order:
        raise MigrationError(
            f"{', '.join(late)} sort(s) before the newest applied migration {newest}: rename the file "
            "after it, or set allow_out_of_order"
        )
    return pending, result


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def apply_one(run_psql: RunPsql, migration: Migration) -> None:
    """Run one file and record it, in one transaction; on error nothing of it stays."""
    bookkeeping = (
        f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY});\n"
        f"INSERT INTO {BOOKKEEPING_TABLE} (filename, checksum) "
        f"VALUES ({_literal(migration.filename)}, {_literal(migration.checksum)});"
    )
    result = run_psql(
        [*BASE_ARGS, "-o", "/dev/null", "--single-transaction", "-c", bookkeeping, "-f", "-"],
        migration.sql,
    )
    if result.rc != 0:
        error = result.stderr.strip().replace("psql:<stdin>:", f"psql:{migration.filename}:")
        raise MigrationError(
            f"migration {migration.filename} failed and was rolled back (psql exit {result.rc}): {error}"
        )


def migrate(
    run_psql: RunPsql,
    directory: Path,
    *,
    check_mode: bool = False,
    allow_out_of_order: bool = False,
) -> MigrateResult:
    """Apply the pending migrations of ``directory``; return what was (or would be) applied."""
    migrations = discover(directory)
    if not check_mode:
        ensure_table(run_psql)
    pending, result = plan(migrations, applied_checksums(run_psql), allow_out_of_order=allow_out_of_order)
    for migration in pending:
        if not check_mode:
            try:
                apply_one(run_psql, migration)
            except MigrationError as exc:
                raise MigrationError(str(exc), result.applied) from None
        result.applied.append(migration.filename)
    return result


@dataclass(frozen=True)
class Connection:
    """psql connection settings, passed as PG* environment variables."""

    database: str
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""

    def environ(self) -> dict[str, str]:
        env = {"PGDATABASE": self.database, "PGPORT": str(self.port), "PGAPPNAME": "unde_sql_migrate"}
        if self.host:
            env["PGHOST"] = self.host
        if self.user:
            env["PGUSER"] = self.user
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def command_prefix(psql: str, os_user: str) -> list[str]:
    """``psql``, or ``runuser -u OS_USER -- psql`` when root must switch to ``os_user``."""
    if not os_user:
        return [psql]
    import pwd

    if os.geteuid() == 0:
        return ["runuser", "-u", os_user, "--", psql]
    if pwd.getpwuid(os.geteuid()).pw_name == os_user:
        return [psql]
    raise MigrationError(f"os_user={os_user} needs the module to run as root (become: true)")


def subprocess_runner(
    connection: Connection, *, psql: str = "psql", os_user: str = "", timeout: float | None = None
) -> RunPsql:
    """A RunPsql that starts psql with subprocess (tests, the benchmark)."""
    prefix = command_prefix(psql, os_user)
    env = {**os.environ, **connection.environ()}

    def run(args: Sequence[str], stdin: str | None) -> PsqlResult:
        proc = subprocess.run(
            [*prefix, *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        return PsqlResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def main() -> None:  # pragma: no cover - exercised through ansible-playbook
    from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

    module = AnsibleModule(
        argument_spec={
            "database": {"type": "str", "required": True},
            "migrations_dir": {"type": "path", "required": True},
            "os_user": {"type": "str", "default": ""},
            "psql": {"type": "str", "default": "psql"},
            "login_host": {"type": "str", "default": ""},
            "login_port": {"type": "int", "default": 5432},
            "login_user": {"type": "str", "default": ""},
            "login_password": {"type": "str", "default": "", "no_log": True},
            "allow_out_of_order": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params: dict[str, Any] = module.params
    connection = Connection(
        database=params["database"],
        host=params["login_host"],
        port=params["login_port"],
        user=params["login_user"],
        password=params["login_password"],
    )
    try:
        prefix = command_prefix(module.get_bin_path(params["psql"], required=True), params["os_user"])
    except MigrationError as exc:
        module.fail_json(msg=str(exc), applied=[])
        return

    def run(args: Sequence[str], stdin: str | None) -> PsqlResult:
        rc, out, err = module.run_command(
            [*prefix, *args],
            data=stdin if stdin is not None else "",
            binary_data=True,
            environ_update=connection.environ(),
        )
        return PsqlResult(rc, out, err)

    try:
        result = migrate(
            run,
            Path(params["migrations_dir"]),
            check_mode=module.check_mode,
            allow_out_of_order=params["allow_out_of_order"],
        )
    except MigrationError as exc:
        module.fail_json(msg=str(exc), applied=exc.applied)
        return
    for name in result.unknown_applied:
        module.warn(f"{name} is recorded in {BOOKKEEPING_TABLE} but missing from {params['migrations_dir']}")
    module.exit_json(
        changed=result.changed,
        applied=result.applied,
        already_applied=result.already_applied,
        unknown_applied=result.unknown_applied,
    )


if __name__ == "__main__":
    main()

"""roles/llm_orchestrator and its runbooks, without a lab:

* the master key ring template renders the JSON the app reads (``{"current": N, "keys": {...}}``)
  with exactly the listed versions, whatever else the vault holds, and the app's own parser
  accepts it;
* the tasks that handle the ring hide it (no_log), write it 0400 in a 0700 directory under /run,
  remove the candidate ring, and the ring never reaches the .env;
* the .env names are the app's settings (so a typo is not silently ignored), the units run the
  spec's queues and concurrency with their /metrics port from the registry, and SHARD_MEMBERS is
  derived exactly as the persona agent's;
* gdpr_erase.yml refuses anything but a UUID, rotate_master_key.yml a version that is missing from
  the vault or not newer than the current one (their first plays, run against localhost), and
  every playbook passes ``--syntax-check``.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from support import REPO

ROLE = REPO / "roles" / "llm_orchestrator"
RUNBOOKS = REPO / "playbooks" / "runbooks"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
VAULT_ID = f"lab@{REPO / 'inventories/lab/vault-password.txt'}"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@functools.cache
def _loader() -> DataLoader:
    init_plugin_loader()
    return DataLoader()


def _key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode()


def _ring(current: Any, extra: list[Any], keys: dict[Any, str]) -> str:
    """templates/master_keys.json.j2 rendered by Ansible's templar, as the template module does."""
    variables = {
        "llm_orchestrator_master_key_current": current,
        "llm_orchestrator_master_key_extra_versions": extra,
        "llm_orchestrator_master_keys": keys,
    }
    templar = Templar(loader=_loader(), variables=variables)
    text = (ROLE / "templates" / "master_keys.json.j2").read_text()
    return str(templar.template(trust_as_template(text)))


VAULT = {"1": _key(1), "2": _key(2), "3": _key(3)}


@pytest.mark.parametrize(
    ("current", "extra", "versions"),
    [(1, [], ["1"]), (2, ["1"], ["1", "2"]), ("3", [2, "1"], ["1", "2", "3"]), (2, [2], ["2"])],
)
def test_the_ring_holds_exactly_the_listed_versions(
    current: Any, extra: list[Any], versions: list[str]
) -> None:
    doc = json.loads(_ring(current, extra, VAULT))
    assert doc == {"current": int(current), "keys": {v: VAULT[v] for v in versions}}


def test_the_ring_reads_versions_written_as_numbers() -> None:
    doc = json.loads(_ring(2, [1], {1: _key(1), 2: _key(2), 9: _key(9)}))
    assert doc == {"current": 2, "keys": {"1": _key(1), "2": _key(2)}}


def test_the_app_parses_the_ring() -> None:
    from llm_orchestrator.crypto import MasterKeyRing

    ring = MasterKeyRing.from_json(_ring(2, ["1"], VAULT))
    assert ring.current == 2 and ring.versions == (1, 2)
    assert ring.key(1) == bytes([1]) * 32


def _tasks(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(tasks: Any) -> None:
        for task in tasks or []:
            out.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key))

    walk(_yaml(path))
    return out


def test_the_ring_tasks_hide_the_keys_and_stay_in_run() -> None:
    tasks = _tasks(ROLE / "tasks" / "key_ring.yml")
    writes = [
        t for t in tasks if (t.get("ansible.builtin.template") or {}).get("src") == "master_keys.json.j2"
    ]
    assert len(writes) == 3  # the preview, the candidate, the ring
    for task in writes:
        assert task.get("no_log") is True, task["name"]
        assert task["ansible.builtin.template"]["mode"] == "0400", task["name"]
    dirs = next(t for t in tasks if t["name"].startswith("Create the ring's directories"))
    assert [d["mode"] for d in dirs["loop"]] == ["0755", "0700"]
    assert _yaml(ROLE / "defaults" / "main.yml")["llm_orchestrator_master_key_dir"].startswith("/run/")
    removal = next(t for t in tasks if t["name"] == "Remove the candidate ring")
    assert removal["ansible.builtin.file"]["state"] == "absent"
    check = next(
        t for t in tasks if "check-ring" in str((t.get("ansible.builtin.command") or {}).get("argv"))
    )
    assert set(check["environment"]) == {"UNDE_ENV_FILE", "MASTER_KEY_FILE"}


def test_the_env_names_are_the_apps_settings() -> None:
    from llm_orchestrator.settings import LlmOrchestratorSettings

    env = _yaml(ROLE / "vars" / "main.yml")["__llm_orchestrator_env"]
    fields = {name.upper() for name in LlmOrchestratorSettings.model_fields}
    # read by the admin CLI's copy-tombstones (the daily timer), not by the workers' settings
    cli_only = {
        f"TOMBSTONE_S3_{k}" for k in ("ENDPOINT", "REGION", "BUCKET", "PREFIX", "ACCESS_KEY", "SECRET_KEY")
    }
    assert set(env) - fields <= cli_only, sorted(set(env) - fields - cli_only)
    required = {n.upper() for n, f in LlmOrchestratorSettings.model_fields.items() if f.is_required()}
    assert required <= set(env), sorted(required - set(env))
    assert env["MASTER_KEY_FILE"] == "{{ llm_orchestrator_master_key_dir }}/master_keys"
    assert not any("master_encryption" in str(v) for v in env.values())


def test_units_and_their_metrics_ports() -> None:
    units = {u["name"]: u for u in _yaml(ROLE / "vars" / "main.yml")["unde_app_units"]}
    assert sorted(units) == [
        "llm-orchestrator-beat",
        "llm-orchestrator-dialogue",
        "llm-orchestrator-enrichment",
    ]
    assert (
        "-Q dialogue_queue -c {{ llm_orchestrator_dialogue_concurrency"
        in units["llm-orchestrator-dialogue"]["exec"]
    )
    assert (
        "-Q enrichment -c {{ llm_orchestrator_enrichment_concurrency"
        in units["llm-orchestrator-enrichment"]["exec"]
    )
    defaults = _yaml(ROLE / "defaults" / "main.yml")
    assert (
        defaults["llm_orchestrator_dialogue_memory_max"],
        defaults["llm_orchestrator_dialogue_concurrency"],
    ) == (
        "2G",
        4,
    )
    registry = _yaml(REPO / "group_vars/all/services.yml")["unde_services"]
    for worker in ("dialogue", "enrichment"):
        entry = registry[f"llm_orchestrator_{worker}_metrics"]
        assert entry["groups"] == ["llm_orchestrator_app"] and entry["clients"] == ["monitoring_server"]
        assert units[f"llm-orchestrator-{worker}"]["environment"]["METRICS_PORT"] == (
            f"{{{{ llm_orchestrator_{worker}_metrics_port }}}}"
        )
        assert defaults[f"llm_orchestrator_{worker}_metrics_port"] == (
            f"{{{{ unde_services.llm_orchestrator_{worker}_metrics.port }}}}"
        )
    assert (
        registry["llm_orchestrator_dialogue_metrics"]["port"]
        != registry["llm_orchestrator_enrichment_metrics"]["port"]
    )


def test_shard_members_are_derived_as_the_persona_agents() -> None:
    ours = _yaml(ROLE / "defaults" / "main.yml")["llm_orchestrator_shard_members"]
    assert ours == _yaml(REPO / "roles/persona_agent/defaults/main.yml")["persona_agent_shard_members"]
    assert ours == "{{ unde_shard_members }}"  # the one derivation, group_vars/all/shards.yml


# ---------------------------------------------------------------------------- runbooks


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """group_vars/all and the lab vault, with no host in the orchestrator's or Redis's groups: a
    runbook's checks run on localhost and its other plays match no host."""
    inv = tmp_path_factory.mktemp("inventory")
    (inv / "group_vars").symlink_to(REPO / "group_vars")
    (inv / "secrets.vault.yml").symlink_to(REPO / "inventories/lab/secrets.vault.yml")
    (inv / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"llm_orchestrator_app": {}, "redis_hot": {}}}})
    )
    return inv


def _run(inventory: Path, playbook: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_VAULT_IDENTITY_LIST": VAULT_ID,
        "ANSIBLE_FORCE_COLOR": "0",
    }
    return subprocess.run(
        [str(PLAYBOOK), "-i", str(inventory), str(playbook), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "ok"),
    [
        ((), False),
        (("-e", "user_id=not-a-uuid"), False),
        (("-e", "user_id=3f2504e0-4f89-11d3-9a0c-0305e82c330"), False),
        (("-e", "user_id=3F2504E0-4F89-11D3-9A0C-0305E82C3301"), True),
    ],
)
def test_gdpr_erase_takes_only_a_uuid(inventory: Path, args: tuple[str, ...], ok: bool) -> None:
    run = _run(inventory, RUNBOOKS / "gdpr_erase.yml", *args)
    assert (run.returncode == 0) == ok, run.stdout + run.stderr
    if not ok:
        assert "Nothing was changed" in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("args", "ok"),
    [
        ((), False),
        (("-e", "master_key_new_version=1"), False),  # the current one
        (("-e", "master_key_new_version=7"), False),  # not in the vault
        (("-e", "master_key_new_version=two"), False),
        (("-e", "master_key_new_version=2"), True),  # the lab vault's next version
    ],
)
def test_rotate_master_key_takes_a_newer_vault_version(
    inventory: Path, args: tuple[str, ...], ok: bool
) -> None:
    run = _run(inventory, RUNBOOKS / "rotate_master_key.yml", *args)
    assert (run.returncode == 0) == ok, run.stdout + run.stderr
    if not ok:
        assert "Add the new key to the vault first" in run.stdout + run.stderr


@pytest.mark.parametrize(
    "playbook",
    [
        RUNBOOKS / "gdpr_erase.yml",
        RUNBOOKS / "rotate_master_key.yml",
        REPO / "playbooks/llm_orchestrator.yml",
    ],
    ids=lambda p: p.name,
)
def test_playbooks_pass_the_syntax_check(inventory: Path, playbook: Path) -> None:
    run = _run(inventory, playbook, "--syntax-check")
    assert run.returncode == 0, run.stdout + run.stderr

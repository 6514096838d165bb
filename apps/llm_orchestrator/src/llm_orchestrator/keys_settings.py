"""Settings of the master key ring (user-knowledge envelope encryption): a LlmOrchestratorSettings mixin."""

from __future__ import annotations

from pathlib import Path

from unde_common.settings import UndeSettings

#: where the role delivers the ring: tmpfs (/run), so the key never touches a persistent disk
DEFAULT_MASTER_KEY_FILE = Path("/run/unde/llm_orchestrator/master_keys")


class KeySettings(UndeSettings):
    """Where the master key ring is read from (tmpfs only)."""

    #: JSON ``{"current": <version>, "keys": {"<version>": "<base64 of 32 bytes>"}}``
    #: (:class:`llm_orchestrator.crypto.MasterKeyRing`), written by
    #: ``ansible-playbook playbooks/llm_orchestrator.yml --tags llm_orchestrator_configure``; re-read
    #: when it changes (:class:`llm_orchestrator.crypto.KeyRingSource`), so a rotation needs no restart
    master_key_file: Path = DEFAULT_MASTER_KEY_FILE

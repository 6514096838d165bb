"""``persona_contract`` — the versioned contract between the Persona Agent and its callers.

Shipped inside the ``unde-persona-agent`` distribution as its own import package, versioned on its
own (:data:`CONTRACT_VERSION`, semver). Callers (LLM Orchestrator, API gateway) send the version
they were built against in every request (``contract_version`` in the body or the
``X-Persona-Contract`` header); :func:`assert_compatible` rejects a different MAJOR version with
:class:`ContractVersionError` (HTTP 409). Minor/patch differences are compatible: new optional
fields only.

Contents:

- :mod:`persona_contract.fields` — the 22 canonical communication fields, defaults, levels and
  the legacy aliases (old field names and old enumerated values);
- :mod:`persona_contract.stages` — relationship stages 0-3: limits and upgrade / downgrade rules;
- :mod:`persona_contract.signals` — the 14 behavioural signal types, their effects, the
  conservative signals, the conflict edges and temporary blocks;
- :mod:`persona_contract.tones` — the 8 tone modes and the 6 voice presets (spec 02 §12);
- :mod:`persona_contract.momentum` — momentum caps per field group (safe / sensitive).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTRACT_VERSION", "ContractVersionError", "assert_compatible", "parse_version"]

#: This contract's version (UNDE_Persona_Voice_Layer v0.7.0).
CONTRACT_VERSION: Final = "0.7.0"

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class ContractVersionError(ValueError):
    """The caller's contract version is malformed or has another major version."""

    def __init__(self, client_version: str, reason: str) -> None:
        self.client_version = client_version
        self.server_version = CONTRACT_VERSION
        super().__init__(
            f"persona_contract {client_version!r} is incompatible with the agent's"
            f" {CONTRACT_VERSION}: {reason}"
        )


def parse_version(version: str) -> tuple[int, int, int]:
    """``"0.7.0"`` → ``(0, 7, 0)``; raises ValueError on anything else."""
    match = _VERSION_RE.match(version.strip())
    if match is None:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


def assert_compatible(client_version: str | None, server_version: str = CONTRACT_VERSION) -> None:
    """Raise :class:`ContractVersionError` unless ``client_version`` has ``server_version``'s major.

    ``None`` (a caller that does not say) is accepted: it gets the agent's version."""
    if client_version is None:
        return
    try:
        client = parse_version(client_version)
    except ValueError as exc:
        raise ContractVersionError(client_version, str(exc)) from None
    server = parse_version(server_version)
    if client[0] != server[0]:
        raise ContractVersionError(client_version, f"major version {client[0]} != {server[0]}")

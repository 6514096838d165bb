"""Canonicalizer: any persona_profile (current or legacy) → canonical field values.

- legacy field names are renamed (:data:`persona_contract.fields.LEGACY_ALIASES`);
- legacy enumerated values (``"low"``, ``"high"``, …) become numbers;
- numbers are clamped to [0, 1]; a canonical name beats its alias when both are given;
- ``overrides`` (explicit user settings from the Settings UI) are canonicalized the same way;
- unknown keys are ignored (reported back in ``unknown``); a value of the wrong type raises
  :class:`ProfileError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from persona_contract.fields import CANONICAL_FIELDS, LEGACY_ALIASES, LEGACY_VALUES

__all__ = ["CanonicalProfile", "ProfileError", "canonicalize"]

_CANONICAL = frozenset(CANONICAL_FIELDS)


class ProfileError(ValueError):
    """A profile value that cannot be understood; ``path`` names it (``persona_profile.humor``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True, slots=True)
class CanonicalProfile:
    values: dict[str, float] = field(default_factory=dict)
    overrides: dict[str, float] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()


def _number(path: str, raw: Any) -> float:
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | float):
        value = float(raw)
        if value != value:  # NaN
            raise ProfileError(path, "NaN is not a level")
        return min(1.0, max(0.0, value))
    if isinstance(raw, str):
        key = raw.strip().lower()
        if key in LEGACY_VALUES:
            return LEGACY_VALUES[key]
        try:
            return _number(path, float(key))
        except ValueError:
            pass
        raise ProfileError(
            path, f"unknown level {raw!r} (expected a number 0..1 or one of {sorted(LEGACY_VALUES)})"
        )
    raise ProfileError(path, f"expected a number 0..1 or a level name, got {type(raw).__name__}")


def _fields(section: str, data: Mapping[str, Any], unknown: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    aliased: dict[str, float] = {}
    for key, raw in data.items():
        name = str(key).strip().lower()
        path = f"{section}.{key}"
        if name in _CANONICAL:
            out[name] = _number(path, raw)
        elif name in LEGACY_ALIASES:
            aliased[LEGACY_ALIASES[name]] = _number(path, raw)
        elif name not in ("overrides", "contract_version", "version"):
            unknown.append(path)
    for name, value in aliased.items():
        out.setdefault(name, value)
    return out


def canonicalize(profile: Mapping[str, Any] | None, section: str = "persona_profile") -> CanonicalProfile:
    if not profile:
        return CanonicalProfile()
    unknown: list[str] = []
    values = _fields(section, profile, unknown)
    raw_overrides = profile.get("overrides")
    overrides: dict[str, float] = {}
    if raw_overrides is not None:
        if not isinstance(raw_overrides, Mapping):
            raise ProfileError(f"{section}.overrides", "expected an object of field → level")
        overrides = _fields(f"{section}.overrides", raw_overrides, unknown)
    return CanonicalProfile(values=values, overrides=overrides, unknown=tuple(sorted(unknown)))

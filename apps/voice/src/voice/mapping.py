"""voice_params (the persona agent's, spec 02 §12) → the ElevenLabs request fields.

=================  ==========================================  ==============================
voice_params       ElevenLabs                                  range sent
=================  ==========================================  ==============================
warmth  (0-1)      ``stability`` = 0.4 + 0.3 · warmth           0.4-0.7
                   ``similarity_boost`` = 0.7 (fixed)           0.7
tension (0-1)      ``style`` = min(1, tension + 0.3)            0.3-1.0
tempo              ``speed`` = tempo                            0.7-1.2 (ElevenLabs' range)
—                  ``use_speaker_boost`` = true                 true
expressiveness     dialogue context: ``previous_text`` is sent  low → none; moderate, high and
                   so the model adapts its intonation           any other label → sent
=================  ==========================================  ==============================

Values a little outside their range are clamped (a tempo of 1.3 is spoken at 1.2: the persona
agent's range is 0.8-1.2, ElevenLabs' 0.7-1.2). Input that cannot be read as voice params — not an
object, a missing or non-numeric warmth/tempo/tension, NaN or infinity, a tempo ≤ 0 — raises
:class:`VoiceParamsError` naming the field; callers answer it as a client error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CONTEXT_FREE",
    "SIMILARITY_BOOST",
    "SPEED_RANGE",
    "VoiceParamsError",
    "VoiceSettings",
    "map_voice_params",
    "sends_context",
]

#: ElevenLabs' ``speed`` range (the official SDK: "Values range from 0.7 to 1.2")
SPEED_RANGE: Final = (0.7, 1.2)
SIMILARITY_BOOST: Final = 0.7
#: expressiveness labels that speak each phrase without the dialogue's context
CONTEXT_FREE: Final = frozenset({"low"})


class VoiceParamsError(ValueError):
    """voice_params that cannot be mapped; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"voice_params.{field}: {problem}" if field else f"voice_params: {problem}")


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    """ElevenLabs' ``voice_settings`` object."""

    stability: float
    similarity_boost: float
    style: float
    use_speaker_boost: bool
    speed: float

    def as_json(self) -> dict[str, Any]:
        return {
            "stability": self.stability,
            "similarity_boost": self.similarity_boost,
            "style": self.style,
            "use_speaker_boost": self.use_speaker_boost,
            "speed": self.speed,
        }


def _number(params: Mapping[str, Any], field: str) -> float:
    if field not in params or params[field] is None:
        raise VoiceParamsError(field, "is required")
    value = params[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VoiceParamsError(field, f"must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise VoiceParamsError(field, "must be a finite number")
    return number


def _clamp(value: float, lo: float, hi: float) -> float:
    return round(min(hi, max(lo, value)), 4)


def _checked(voice_params: object) -> Mapping[str, Any]:
    if not isinstance(voice_params, Mapping):
        raise VoiceParamsError("", f"must be an object, not {type(voice_params).__name__}")
    return voice_params


def map_voice_params(voice_params: object) -> VoiceSettings:
    """The ElevenLabs ``voice_settings`` of ``voice_params`` (module table), or VoiceParamsError."""
    params = _checked(voice_params)
    warmth = _clamp(_number(params, "warmth"), 0.0, 1.0)
    tension = _clamp(_number(params, "tension"), 0.0, 1.0)
    tempo = _number(params, "tempo")
    if tempo <= 0:
        raise VoiceParamsError("tempo", "must be greater than 0")
    return VoiceSettings(
        stability=_clamp(0.4 + warmth * 0.3, 0.0, 1.0),
        similarity_boost=SIMILARITY_BOOST,
        style=_clamp(tension + 0.3, 0.0, 1.0),
        use_speaker_boost=True,
        speed=_clamp(tempo, *SPEED_RANGE),
    )


def sends_context(voice_params: object) -> bool:
    """Whether the dialogue context (``previous_text``) goes with the phrase: not for a ``low``
    expressiveness; a missing or unknown label (the spec's example says "warm") counts as moderate."""
    params = _checked(voice_params)
    label = params.get("expressiveness")
    if label is not None and not isinstance(label, str):
        raise VoiceParamsError("expressiveness", f"must be a string, not {type(label).__name__}")
    return (label or "moderate").lower() not in CONTEXT_FREE

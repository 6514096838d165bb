"""Golden tests of the persona rule engine: every case's full output (directive, voice, avatar,
render hints, debug) must equal ``golden/<case>.json`` exactly. Any behaviour change fails here;
regenerate deliberately with
``UNDE_UPDATE_GOLDEN=1 pytest apps/persona_agent/tests/test_persona_agent_golden.py`` and review the diff."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from persona_agent.engine import decide
from persona_agent.models import PersonaRequest
from persona_agent.state import StageRow, TempBlock, UserState

NOW = "2026-03-05T15:30:00+00:00"
USER = "5f0c1c9e-1d2b-4c1e-9a51-0d3f4b9b7a10"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def state_from(raw: dict[str, Any] | None) -> UserState:
    if raw is None:
        return UserState()
    stage = raw.get("stage", {})
    row = StageRow(
        stage=stage.get("stage", 0),
        stage_updated_at=_ts(stage.get("stage_updated_at", "2026-01-01T00:00:00+00:00")),
        sessions_count=stage.get("sessions_count", 10),
        total_exchanges=stage.get("total_exchanges", 100),
        positive_signals_count=stage.get("positive_signals_count", 10),
        last_active_at=_ts(stage.get("last_active_at", "2026-03-04T18:00:00+00:00")),
    )
    blocks = tuple(TempBlock(b["key"], _ts(b["until"]), b["reason"]) for b in raw.get("temp_blocks", []))
    return UserState(
        profile=raw.get("profile", {}), stage=row, temp_blocks=blocks, known=True, source="shard"
    )


def stage(n: int, **extra: Any) -> dict[str, Any]:
    return {"stage": {"stage": n}, **extra}


RAMADAN_CTX = {
    "cultural": {
        "sensitivity_level": "high",
        "active_period": "ramadan",
        "next_meal_break": "18:21",
        "is_pre_meal_break": False,
    }
}
HAPPY = {"emotion": {"valence": 0.8, "arousal": 0.7, "dominance": 0.6}, "signals": {"confidence": 0.8}}
OPPS = [{"store": "Zara", "type": "sale", "discount": "30%", "relevance_reason": "user_favorite_brand"}]

CASES: dict[str, dict[str, Any]] = {
    "unknown_user_defaults": {"request": {}, "state": None},
    "stage0_humor_capped_low": {
        "request": {"persona_profile": {"humor_level": 0.9, "tease_level": 0.8}},
        "state": None,
    },
    "stage0_no_cultural_refs_in_ramadan": {
        "request": {"context_frame": RAMADAN_CTX, "persona_profile": {"cultural_reference_openness": 0.9}},
        "state": stage(0),
    },
    "stage2_cultural_ref_high_sensitivity": {
        "request": {"context_frame": RAMADAN_CTX, "persona_profile": {"cultural_reference_openness": 0.7}},
        "state": stage(2),
    },
    "stage2_medium_sensitivity_neutral_ref_only": {
        "request": {
            "context_frame": {"cultural": {**RAMADAN_CTX["cultural"], "sensitivity_level": "medium"}},
            "persona_profile": {"cultural_reference_openness": 0.7},
        },
        "state": stage(2),
    },
    "stage2_low_sensitivity_no_ref": {
        "request": {
            "context_frame": {"cultural": {**RAMADAN_CTX["cultural"], "sensitivity_level": "low"}},
            "persona_profile": {"cultural_reference_openness": 0.7},
        },
        "state": stage(2),
    },
    "cultural_ref_cooldown": {
        "request": {
            "context_frame": RAMADAN_CTX,
            "persona_profile": {"cultural_reference_openness": 0.7},
            "last_n_response_meta": [{"had_cultural_ref": True}, {}],
        },
        "state": stage(2),
    },
    "cultural_ref_temp_block": {
        "request": {"context_frame": RAMADAN_CTX, "persona_profile": {"cultural_reference_openness": 0.7}},
        "state": stage(
            2,
            temp_blocks=[
                {
                    "key": "cultural_ref",
                    "until": "2026-03-08T00:00:00+00:00",
                    "reason": "cultural_ref_rejected",
                }
            ],
        ),
    },
    "legacy_aliases": {
        "request": {"persona_profile": {"humour": "high", "emojis": "low", "tempo": "fast", "formal": 0.3}},
        "state": stage(2),
    },
    "override_beats_stage_cap": {
        "request": {"persona_profile": {"humor_level": 0.2, "overrides": {"humor_level": 0.9}}},
        "state": stage(0),
    },
    "temp_block_beats_override": {
        "request": {"persona_profile": {"overrides": {"humor_level": 0.9}}},
        "state": stage(
            2,
            temp_blocks=[{"key": "humor", "until": "2026-03-06T00:00:00+00:00", "reason": "humor_rejected"}],
        ),
    },
    "expired_temp_block_ignored": {
        "request": {"persona_profile": {"humor_level": 0.6}},
        "state": stage(
            2,
            temp_blocks=[{"key": "humor", "until": "2026-03-05T00:00:00+00:00", "reason": "humor_rejected"}],
        ),
    },
    "frustrated_user_supportive_no_cards": {
        "request": {
            "mood_frame": {"emotion": {"valence": 0.3, "arousal": 0.7}, "signals": {"frustration": 0.8}},
            "context_frame": {"opportunities": OPPS},
            "persona_profile": {"humor_level": 0.8},
        },
        "state": stage(2),
    },
    "low_valence_supportive": {"request": {"mood_frame": {"emotion": {"valence": 0.2}}}, "state": stage(1)},
    "defuse_action_supportive": {
        "request": {"mood_frame": {"topic": {"action": "defuse", "emotional_reversal": True}}},
        "state": stage(1),
    },
    "fatigue_calm_short": {"request": {"mood_frame": {"signals": {"fatigue": 0.7}}}, "state": stage(1)},
    "night_calm": {
        "request": {"context_frame": {"environment": {"time_context": {"part_of_day": "night"}}}},
        "state": stage(1),
    },
    "urgency_efficient": {"request": {"mood_frame": {"signals": {"urgency": 0.8}}}, "state": stage(1)},
    "intent_buy_efficient_with_cards": {
        "request": {"user_intent": "buy", "context_frame": {"opportunities": OPPS}},
        "state": stage(1),
    },
    "mall_closing_efficient": {
        "request": {"context_frame": {"environment": {"time_context": {"mall_closes_in_hours": 0.5}}}},
        "state": stage(1),
    },
    "low_confidence_gentle": {"request": {"mood_frame": {"signals": {"confidence": 0.2}}}, "state": stage(1)},
    "formal_professional": {"request": {"persona_profile": {"formality": 0.85}}, "state": stage(1)},
    "enthusiastic_high_energy": {
        "request": {"mood_frame": HAPPY, "persona_profile": {"enthusiasm": 0.8}},
        "state": stage(2),
    },
    "playful_stage1": {
        "request": {"mood_frame": {"emotion": {"valence": 0.65}}, "persona_profile": {"humor_level": 0.6}},
        "state": stage(1),
    },
    "budget_tight": {
        "request": {"user_knowledge_compact": {"budget": {"tier": "tight", "max_item_price": 250}}},
        "state": stage(1),
    },
    "weight_sensitive": {
        "request": {"user_knowledge_compact": {"body": {"weight_sensitive": True}}},
        "state": stage(1),
    },
    "future_event_stage2_full_memory": {
        "request": {
            "user_knowledge_compact": {
                "name": "Aisha",
                "life_events": [
                    {"type": "wedding", "date": "2026-03-17", "title": "sister's wedding"},
                    {"type": "trip", "date": "2026-06-01"},
                ],
            },
            "persona_profile": {"memory_reference_level": 0.8},
        },
        "state": stage(2),
    },
    "future_event_memory_blocked": {
        "request": {
            "user_knowledge_compact": {"life_events": [{"type": "wedding", "date": "2026-03-17"}]},
            "persona_profile": {"memory_reference_level": 0.8},
        },
        "state": stage(
            2,
            temp_blocks=[
                {"key": "memory", "until": "2026-03-07T00:00:00+00:00", "reason": "memory_ref_uncomfortable"}
            ],
        ),
    },
    "repetition_three_jokes": {
        "request": {
            "persona_profile": {"humor_level": 0.7},
            "mood_frame": {"emotion": {"valence": 0.6}},
            "last_n_response_meta": [{"had_humor": True}] * 3,
        },
        "state": stage(2),
    },
    "repetition_questions_and_opener": {
        "request": {
            "last_n_response_meta": [
                {"had_question": True, "opener": "Great choice!"},
                {"had_question": True, "opener": "Great choice!"},
                {"had_question": True, "opener": "Great choice!"},
            ]
        },
        "state": stage(1),
    },
    "repetition_compliments": {
        "request": {
            "persona_profile": {"compliment_frequency": 0.7},
            "last_n_response_meta": [{"had_compliment": True}, {"had_compliment": True}],
        },
        "state": stage(2),
    },
    "stage3_nickname": {"request": {"user_knowledge_compact": {"name": "Dana"}}, "state": stage(3)},
    "stage0_name_no_nickname": {"request": {"user_knowledge_compact": {"name": "Dana"}}, "state": None},
    "inactivity_downgrade_3_to_2": {
        "request": {},
        "state": {
            "stage": {
                "stage": 3,
                "last_active_at": "2025-11-20T00:00:00+00:00",
                "stage_updated_at": "2025-06-01T00:00:00+00:00",
            }
        },
    },
    "inactivity_downgrade_2_to_0": {
        "request": {},
        "state": {
            "stage": {
                "stage": 2,
                "last_active_at": "2025-08-01T00:00:00+00:00",
                "stage_updated_at": "2025-05-01T00:00:00+00:00",
            }
        },
    },
    "request_stage_for_unknown_user": {"request": {"relationship_stage": 2}, "state": None},
    "learned_profile_beats_request_profile": {
        "request": {"persona_profile": {"verbosity": 0.9, "warmth": 0.9}},
        "state": stage(1, profile={"verbosity": 0.3}),
    },
    "pre_meal_break_medium": {
        "request": {
            "context_frame": {
                "cultural": {
                    "sensitivity_level": "medium",
                    "active_period": "ramadan",
                    "next_meal_break": "18:21",
                    "is_pre_meal_break": True,
                }
            }
        },
        "state": stage(1),
    },
    "ramadan_low_sensitivity_daytime": {
        "request": {"context_frame": {"cultural": {"sensitivity_level": "low", "active_period": "ramadan"}}},
        "state": stage(1),
    },
    "topic_shift_gesture_and_mood_tension": {
        "request": {
            "mood_frame": {
                "topic": {"shift_detected": True, "action": "acknowledge_shift"},
                "voice_params": {"tension": 0.9, "tempo": 1.1, "warmth": 0.4},
            }
        },
        "state": stage(1),
    },
    "eid_holiday_nearby_stage2": {
        "request": {
            "context_frame": {
                "cultural": {"sensitivity_level": "high", "nearby_holidays": [{"period": "eid_al_fitr"}]}
            },
            "persona_profile": {"cultural_reference_openness": 0.6},
        },
        "state": stage(2),
    },
}


GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UNDE_UPDATE_GOLDEN") == "1"


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    request = PersonaRequest.model_validate({"user_id": USER, **case["request"]})
    out = decide(request, state_from(case["state"]), datetime.fromisoformat(NOW))
    normalised: dict[str, Any] = json.loads(json.dumps(out, sort_keys=True))
    return normalised


def test_there_are_at_least_29_golden_cases() -> None:
    assert len(CASES) >= 29
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    actual = run_case(CASES[name])
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(actual, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    expected = json.loads(path.read_text("utf-8"))
    assert actual == expected, f"golden case {name} changed (UNDE_UPDATE_GOLDEN=1 to accept)"

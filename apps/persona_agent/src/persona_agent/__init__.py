"""UNDE persona-agent.

Persona agent (rule engine, no LLM): /persona, /persona/feedback, /persona/flush, p95 < 15 ms.

Deployed by ``roles/persona_agent`` on local-persona (10.2.0.21).
"""

__version__ = "0.1.0"

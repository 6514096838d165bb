"""UNDE context-agent.

Context agent: POST /context → context_frame (geo, weather, time, events, culture), p95 < 100 ms.

Deployed by ``roles/context_agent`` on local-context (10.2.0.19).
"""

__version__ = "0.1.0"

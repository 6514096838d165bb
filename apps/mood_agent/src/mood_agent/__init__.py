"""UNDE mood-agent.

Mood agent: POST /analyze → mood_frame (light LLM classification with fallback, smoothing), p95 <
200 ms.

Deployed by ``roles/mood_agent`` on local-mood (10.2.0.11).
"""

__version__ = "0.1.0"

"""UNDE api-gateway.

The only user entry point (behind nginx): REST API, chat fan-out to mood/context agents and the LLM
orchestrator, recognition requests.

Deployed by ``roles/api_gateway`` on local-app (10.2.0.2), behind nginx.
"""

__version__ = "0.1.0"

"""``python -m api_gateway`` (or ``unde-api-gateway``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from api_gateway.settings import ApiGatewaySettings
from unde_common.health import serve


def main() -> None:
    serve("api_gateway.app:create", ApiGatewaySettings.load())


if __name__ == "__main__":
    main()

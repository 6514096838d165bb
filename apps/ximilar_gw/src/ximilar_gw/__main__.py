"""``python -m ximilar_gw`` (or ``unde-ximilar-gw``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from unde_common.health import serve
from ximilar_gw.settings import XimilarGwSettings


def main() -> None:
    serve("ximilar_gw.app:create", XimilarGwSettings.load())


if __name__ == "__main__":
    main()

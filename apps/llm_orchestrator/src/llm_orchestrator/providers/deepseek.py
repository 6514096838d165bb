"""DeepSeek chat completions (the dialogue's primary LLM), streamed.

``POST https://api.deepseek.com/chat/completions`` (https://api-docs.deepseek.com/api/
create-chat-completion) with the model id from settings (``deepseek-v4-flash``; DeepSeek now
names its Flash model ``deepseek-flash`` and serves the legacy id with it at the Flash price:
https://api-docs.deepseek.com/quick_start/pricing). V4 thinks before answering unless the request
says ``{"thinking": {"type": "disabled"}}`` (https://api-docs.deepseek.com/guides/thinking_mode);
the setting ``deepseek_thinking`` decides, disabled by default (a dialogue turn cannot wait for
reasoning). Stream format: :mod:`llm_orchestrator.providers.openai_compat`.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from llm_orchestrator.providers.base import http_config
from llm_orchestrator.providers.openai_compat import OpenAICompatibleClient
from llm_orchestrator.providers.settings import ProviderSettings

__all__ = ["DeepSeekClient"]


class DeepSeekClient(OpenAICompatibleClient):
    name = "deepseek"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        thinking: str = "disabled",
        price_in_per_1m: float = 0.0,
        price_out_per_1m: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"}
        super().__init__(
            model,
            http_config("deepseek", base_url, headers),
            price_in_per_1m=price_in_per_1m,
            price_out_per_1m=price_out_per_1m,
            transport=transport,
        )
        self.thinking = thinking

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> DeepSeekClient:
        return cls(
            str(settings.deepseek_base_url),
            settings.deepseek_api_key,
            settings.deepseek_model,
            thinking=settings.deepseek_thinking,
            price_in_per_1m=settings.deepseek_price_input_per_1m,
            price_out_per_1m=settings.deepseek_price_output_per_1m,
        )

    def extra(self) -> dict[str, Any]:
        return {"thinking": {"type": self.thinking}}

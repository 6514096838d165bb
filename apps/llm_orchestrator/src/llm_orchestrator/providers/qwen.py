"""Qwen through Alibaba Cloud Model Studio's OpenAI-compatible mode (DashScope), streamed.

``POST {qwen_base_url}/chat/completions``, base URL
``https://dashscope-intl.aliyuncs.com/compatible-mode/v1`` (Singapore, international), Bearer key
(https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope). Qwen3
models take DashScope's own top-level ``enable_thinking`` in this mode; the client sends the
setting ``qwen_enable_thinking`` (off by default: the commercial ``qwen-plus`` answers without
thinking, and a dialogue turn cannot wait for it). Stream: ``stream_options.include_usage`` gives a
last chunk with ``usage`` and empty ``choices``, then ``[DONE]``
(:mod:`llm_orchestrator.providers.openai_compat`).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from llm_orchestrator.providers.base import http_config
from llm_orchestrator.providers.openai_compat import OpenAICompatibleClient
from llm_orchestrator.providers.settings import ProviderSettings

__all__ = ["QwenClient"]


class QwenClient(OpenAICompatibleClient):
    name = "qwen"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        enable_thinking: bool = False,
        price_in_per_1m: float = 0.0,
        price_out_per_1m: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"}
        super().__init__(
            model,
            http_config("qwen", base_url, headers),
            price_in_per_1m=price_in_per_1m,
            price_out_per_1m=price_out_per_1m,
            transport=transport,
        )
        self.enable_thinking = enable_thinking

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> QwenClient:
        return cls(
            str(settings.qwen_base_url),
            settings.qwen_api_key,
            settings.qwen_model,
            enable_thinking=settings.qwen_enable_thinking,
            price_in_per_1m=settings.qwen_price_input_per_1m,
            price_out_per_1m=settings.qwen_price_output_per_1m,
        )

    def extra(self) -> dict[str, Any]:
        return {"enable_thinking": self.enable_thinking}

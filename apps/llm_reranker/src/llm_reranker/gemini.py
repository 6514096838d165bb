"""Client of the Gemini API (``generateContent`` REST, base URL ``GEMINI_BASE_URL``, key in the
``x-goog-api-key`` header): a text prompt plus inline JPEG images in, a JSON answer out
(``generationConfig.responseMimeType = application/json``).

    answer = await gemini.generate_json(prompt, [jpeg1, jpeg2])   # GeminiAnswer(data, usage)
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError

__all__ = ["GeminiAnswer", "GeminiClient", "GeminiResponseError"]


class GeminiResponseError(ProviderError):
    """Gemini answered, but not with usable JSON (blocked, empty, not JSON, wrong shape)."""


@dataclass(frozen=True)
class GeminiAnswer:
    data: dict[str, Any]
    input_tokens: int
    output_tokens: int


class GeminiClient:
    def __init__(self, config: ProviderConfig, *, api_key: str, model: str) -> None:
        headers = {**config.headers, "x-goog-api-key": api_key}
        self.http = AsyncProviderClient(config.with_(headers=headers))
        self.model = model
        self.path = f"/v1beta/models/{model}:generateContent"

    async def aclose(self) -> None:
        await self.http.aclose()

    def _bad(self, reason: str) -> GeminiResponseError:
        return GeminiResponseError(
            "gemini", "POST", self.http.config.base_url + self.path, attempts=1, reason=reason
        )

    async def generate_json(self, prompt: str, images: list[bytes]) -> GeminiAnswer:
        parts: list[dict[str, Any]] = [{"text": prompt}]
        parts += [
            {"inline_data": {"mime_type": "image/jpeg", "data": base64.b64encode(img).decode("ascii")}}
            for img in images
        ]
        body = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {"responseMimeType": "application/json", "temperature": 0.0},
        }
        data = await self.http.post_json(self.path, json=body)
        if not isinstance(data, dict):
            raise self._bad("answer is not a JSON object")
        block = (data.get("promptFeedback") or {}).get("blockReason")
        if block:
            raise self._bad(f"prompt blocked: {block}")
        try:
            candidate = data["candidates"][0]
            text = "".join(p.get("text", "") for p in candidate["content"]["parts"])
        except (KeyError, IndexError, TypeError) as exc:
            raise self._bad(f"no candidate text ({exc!r})") from None
        text = text.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise self._bad(f"model text is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise self._bad("model JSON is not an object")
        usage = data.get("usageMetadata") or {}
        return GeminiAnswer(
            parsed, int(usage.get("promptTokenCount", 0)), int(usage.get("candidatesTokenCount", 0))
        )

"""Client of the Gemini API (``generateContent`` REST, base URL ``GEMINI_BASE_URL``, key in the
``x-goog-api-key`` header): a text prompt plus inline JPEG images in, a JSON answer out
(``generationConfig.responseMimeType = application/json``).

    answer = await gemini.generate_json(prompt, [jpeg1, jpeg2])   # GeminiAnswer(data, usage)

Request and response shapes: https://ai.google.dev/api/generate-content (contract fixture
``tests/contracts/gemini_generate_content.json``).

- Thinking: Gemini 3 models think before answering unless told otherwise; the calls here are
  latency-bound (ten in parallel per /rerank, 1-2 s in all), so every request names
  ``generationConfig.thinkingConfig.thinkingLevel`` (``GEMINI_THINKING_LEVEL``, default
  ``minimal``: "matches no thinking for most queries", https://ai.google.dev/gemini-api/docs/thinking).
  No ``temperature``: Gemini 3 models are tuned for the default and 3.5 Flash-Lite ignores custom
  values.
- Tokens: ``thoughtsTokenCount`` is billed at the output price on top of ``candidatesTokenCount``,
  so :attr:`GeminiAnswer.output_tokens` is their sum (https://ai.google.dev/gemini-api/docs/pricing:
  output price "including thinking tokens").
- Retries: generateContent is billed per generated token, so it is not idempotent: a call whose
  answer was lost (read timeout, dropped connection) may have been billed and is not sent again.
  A 429 RESOURCE_EXHAUSTED or 503 UNAVAILABLE refuses the request before anything is generated
  (no usage, nothing billed): that answer is retried, waiting what its ``RetryInfo`` asks
  (``retry_refused=True`` of the shared client).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError

__all__ = ["GeminiAnswer", "GeminiClient", "GeminiResponseError", "generate_content_body"]


class GeminiResponseError(ProviderError):
    """Gemini answered, but not with usable JSON (blocked, empty, not JSON, wrong shape)."""


@dataclass(frozen=True)
class GeminiAnswer:
    data: dict[str, Any]
    input_tokens: int
    #: billed output: candidatesTokenCount + thoughtsTokenCount
    output_tokens: int
    thought_tokens: int = 0


def generate_content_body(prompt: str, images: list[bytes], *, thinking_level: str) -> dict[str, Any]:
    """The generateContent request body: one user turn (text, then the JPEGs inline)."""
    parts: list[dict[str, Any]] = [{"text": prompt}]
    parts += [
        {"inline_data": {"mime_type": "image/jpeg", "data": base64.b64encode(img).decode("ascii")}}
        for img in images
    ]
    return {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingLevel": thinking_level},
        },
    }


class GeminiClient:
    def __init__(
        self, config: ProviderConfig, *, api_key: str, model: str, thinking_level: str = "minimal"
    ) -> None:
        headers = {**config.headers, "x-goog-api-key": api_key}
        self.http = AsyncProviderClient(config.with_(headers=headers))
        self.model = model
        self.thinking_level = thinking_level
        self.path = f"/v1beta/models/{model}:generateContent"

    async def aclose(self) -> None:
        await self.http.aclose()

    def _bad(self, reason: str) -> GeminiResponseError:
        return GeminiResponseError(
            "gemini", "POST", self.http.config.base_url + self.path, attempts=1, reason=reason
        )

    async def generate_json(self, prompt: str, images: list[bytes]) -> GeminiAnswer:
        body = generate_content_body(prompt, images, thinking_level=self.thinking_level)
        data = await self.http.post_json(self.path, json=body, retry_refused=True)
        if not isinstance(data, dict):
            raise self._bad("answer is not a JSON object")
        block = (data.get("promptFeedback") or {}).get("blockReason")
        if block:
            raise self._bad(f"prompt blocked: {block}")
        try:
            candidate = data["candidates"][0]
            # thought summaries (parts marked "thought": true) are not the answer
            text = "".join(p.get("text", "") for p in candidate["content"]["parts"] if not p.get("thought"))
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
        thoughts = int(usage.get("thoughtsTokenCount", 0))
        return GeminiAnswer(
            parsed,
            int(usage.get("promptTokenCount", 0)),
            int(usage.get("candidatesTokenCount", 0)) + thoughts,
            thoughts,
        )

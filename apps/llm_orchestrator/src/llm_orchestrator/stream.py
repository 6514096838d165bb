# ruff: noqa: RUF001, RUF003  (typographic quotes and Cyrillic on purpose)
"""The answer as it is produced: each finished sentence published on Redis while the LLM streams, so
the gateway can hand the first sentence to TTS before the whole answer exists.

Channel ``orch:stream:<assistant_message_id>`` on the orchestrator's broker Redis (local-redis DB 11;
its ACL user may PUBLISH ``orch:stream:*``), one JSON object per message, ``seq`` counting every
message of the stream from 0:

- ``{"type": "sentence", "seq": n, "text": "..."}`` — a finished sentence. The texts are consecutive
  slices of the reply: joined they are exactly the stored reply (the whitespace between two sentences
  starts the second one; the first has no leading and the last no trailing whitespace);
- ``{"type": "reset", "seq": n}`` — a provider failed after some of its sentences went out and the
  router moved to the next one (or the task failed and will be retried): drop what you had, the
  answer starts again with the sentences that follow;
- ``{"type": "end", "seq": n, "assistant_message_id": "..."}`` — the reply is stored (the complete
  result then comes from the Celery result).

Publishing never fails a turn: a Redis error or a publish slower than ``STREAM_PUBLISH_TIMEOUT_S`` is
logged once, counted (``llm_orchestrator_stream_publish_errors_total``) and the rest of that stream
is dropped (counted too); the reply is stored as if nobody listened. Pub/sub keeps nothing: a
subscriber must SUBSCRIBE before the task is sent to see the first sentence.

:func:`split_sentences` is the pure splitter; :class:`SentenceStream` feeds it from the provider's
text pieces (the router's :class:`~llm_orchestrator.providers.router.TextSink`) and publishes in order
from one background task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from uuid import UUID

__all__ = ["SentenceStream", "channel_of", "split_sentences"]

log = logging.getLogger(__name__)

#: characters that end a sentence when whitespace (or the end of the answer) follows
_TERMINATORS = frozenset(".!?…")
#: closing quotes and brackets that belong to the sentence they follow
_CLOSERS = frozenset("\"'»”’)]")
#: words that end with a dot but not a sentence (lower case, without the dot)
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "approx", "incl", "cf", "fig", "напр", "см", "ул", "др"}
)
#: letter-dot-letter tokens such as "e.g", "i.e", "U.S", "т.е" (the final dot not included)
_DOTTED = re.compile(r"^[^\W\d_](?:\.[^\W\d_])+$")


def channel_of(assistant_message_id: UUID | str) -> str:
    """The Redis channel of one answer's sentences."""
    return f"orch:stream:{assistant_message_id}"


def _not_a_sentence_end(text: str, run_start: int) -> bool:
    """Whether the single dot at ``run_start`` closes an abbreviation or an initial, not a sentence."""
    start = run_start
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    token = text[start:run_start].lstrip("\"'«“‘([")
    if not token:
        return False
    if len(token) == 1 and token.isalpha():
        return True  # an initial: "J. Smith", "т. е."
    return token.lower() in _ABBREVIATIONS or _DOTTED.match(token) is not None


def split_sentences(text: str, *, final: bool = False) -> tuple[list[str], str]:
    """Cut the finished sentences off the front of ``text``: ``(sentences, rest)`` with
    ``"".join(sentences) + rest == text``.

    A sentence ends after ``.``, ``!``, ``?`` or ``…`` (a run of them, with closing quotes or
    brackets) when whitespace follows, and before a newline; the whitespace goes to the next
    sentence. Not an end: a dot inside a number ("3.5"), after an abbreviation ("e.g.", "i.e.",
    "Dr.", "vs.") or an initial ("J. Smith"). A terminator at the very end of ``text`` is undecided
    (the next piece may be "5" of "3.5") unless ``final``, when the rest becomes the last sentence.
    A piece that is only whitespace is never a sentence of its own."""
    sentences: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            if text[start:i].strip():
                sentences.append(text[start:i])
                start = i
            i += 1
            continue
        if ch not in _TERMINATORS:
            i += 1
            continue
        run_start = i
        j = i + 1
        while j < n and text[j] in _TERMINATORS:
            j += 1
        single_dot = text[run_start:j] == "."
        while j < n and text[j] in _CLOSERS:
            j += 1
        if j == n:
            break  # undecided until the next piece (or the end of the answer)
        ends = not (single_dot and _not_a_sentence_end(text, run_start))
        if text[j].isspace() and ends and text[start:j].strip():
            sentences.append(text[start:j])
            start = j
        i = j
    rest = text[start:]
    if final and rest.strip():
        sentences.append(rest)
        rest = ""
    return sentences, rest


class SentenceStream:
    """One answer's stream (see the module docstring). ``text``/``reset`` are called by the LLM
    router as pieces arrive (synchronously, on the turn's loop); ``finish`` after the LLM returned,
    ``end`` after the reply is stored, ``abort`` when the turn raised."""

    def __init__(
        self,
        redis: Any,
        assistant_message_id: UUID,
        metrics: Any,
        *,
        publish_timeout_s: float = 0.5,
        enabled: bool = True,
    ) -> None:
        self.redis = redis
        self.message_id = assistant_message_id
        self.channel = channel_of(assistant_message_id)
        self.metrics = metrics
        self.publish_timeout_s = publish_timeout_s
        self.enabled = enabled
        self.seq = 0
        self._buffer = ""
        #: whether a sentence went out since the start or the last reset (a reset is sent only then)
        self._sent = False
        self._broken = False
        self._closed = False
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        #: the sentence texts published since the last reset (tests, the log)
        self.sentences: list[str] = []

    # ------------------------------------------------------------------ the router's sink

    def text(self, piece: str) -> None:
        """A piece of answer text from the provider."""
        if not self.enabled or not piece:
            return
        buffer = self._buffer + piece
        if not self.sentences:
            buffer = buffer.lstrip()  # the stored reply is stripped
        done, self._buffer = split_sentences(buffer)
        for sentence in done:
            self._sentence(sentence)

    def reset(self) -> None:
        """The provider failed: forget its text; tell the subscriber when it had some."""
        if not self.enabled:
            return
        self._buffer = ""
        self.sentences = []
        if self._sent:
            self._sent = False
            self._put({"type": "reset"})

    # ------------------------------------------------------------------ the turn's calls

    def answer(self, text: str) -> None:
        """A whole answer that did not come from the router (the graceful template)."""
        self.reset()
        self.text(text)

    def finish(self) -> None:
        """The LLM is done: the rest of the buffer is the last sentence (trailing space dropped)."""
        if not self.enabled:
            return
        done, self._buffer = split_sentences(self._buffer.rstrip(), final=True)
        for sentence in done:
            self._sentence(sentence)

    async def end(self) -> None:
        """The reply is stored: publish ``end`` and wait (bounded) for the stream to go out."""
        if not self.enabled or self._closed:
            return
        self._put({"type": "end", "assistant_message_id": str(self.message_id)})
        await self._close()

    async def abort(self) -> None:
        """The turn raised after the stream started: the subscriber drops what it had."""
        if not self.enabled or self._closed:
            return
        self.reset()
        await self._close()

    # ------------------------------------------------------------------ publishing

    def _sentence(self, text: str) -> None:
        self.sentences.append(text)
        self._sent = True
        self._put({"type": "sentence", "text": text})

    def _put(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        message = {"type": message.pop("type"), "seq": self.seq, **message}
        self.seq += 1
        if self._broken:
            self.metrics.stream_dropped.inc()
            return
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._publish_all())
        self._queue.put_nowait(message)

    async def _publish_all(self) -> None:
        while (message := await self._queue.get()) is not None:
            if self._broken:
                self.metrics.stream_dropped.inc()
                continue
            data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
            try:
                await asyncio.wait_for(self.redis.publish(self.channel, data), self.publish_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._broken = True
                self.metrics.stream_publish_errors.inc()
                self.metrics.stream_dropped.inc()
                log.warning(
                    "sentence stream not published; the rest of this answer's stream is dropped",
                    extra={
                        "channel": self.channel,
                        "seq": message["seq"],
                        "error": type(exc).__name__,
                        "detail": str(exc)[:200],
                    },
                )
                continue
            self.metrics.stream_messages.labels(message["type"]).inc()

    async def _close(self) -> None:
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._queue.put_nowait(None)
        try:
            # every message gets its own publish timeout; past that the worker is cut
            await asyncio.wait_for(
                asyncio.shield(worker), self.publish_timeout_s * (self._queue.qsize() + 1) + 0.1
            )
        except TimeoutError:
            worker.cancel()
            self.metrics.stream_publish_errors.inc()
            log.warning("sentence stream cut: publishing too slow", extra={"channel": self.channel})
        except Exception as exc:
            log.warning("sentence stream worker failed", extra={"error": type(exc).__name__})

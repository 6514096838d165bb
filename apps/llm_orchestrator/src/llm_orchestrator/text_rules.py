# ruff: noqa: RUF001, RUF002  (Cyrillic on purpose)
"""Shared text helpers of the rule-based dialogue logic: normalisation, tokens, word lists, emoji.

Every rule works on *normalised tokens*: the text lower-cased, ``ё`` → ``е``, apostrophes removed
(``don't`` → ``dont``, ``I'm`` → ``im``), then split into ``\\w+`` runs. A :class:`Lexicon` matches
three kinds of entries in one pass over the tokens: exact words, stems (``"устал*"`` matches
``устала``, ``усталость``; the way Russian inflection is covered without a morphology library) and
phrases of several tokens (``"в прошлый раз"``, matched in the space-joined token string). No
backtracking regex is involved: matching is set look-ups and ``str.startswith(tuple)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "EMOJI",
    "Lexicon",
    "Tokens",
    "has_emoji",
    "normalise",
    "strip_emoji",
    "tokens",
]

_APOSTROPHES = str.maketrans({"'": None, "\u2019": None, "\u02bc": None, "ё": "е", "Ё": "Е"})
_WORD = re.compile(r"\w+")
#: pictographs, dingbats, symbols, regional indicators, variation selector and zero-width joiner
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\U0001f1e6-\U0001f1ff]+")


def normalise(text: str) -> str:
    return text.translate(_APOSTROPHES).lower()


@dataclass(frozen=True, slots=True)
class Tokens:
    """A text's normalised tokens and their space-joined form (padded, for phrase look-ups)."""

    words: tuple[str, ...]
    joined: str


def tokens(text: str) -> Tokens:
    words = tuple(_WORD.findall(normalise(text)))
    return Tokens(words, " " + " ".join(words) + " ")


def has_emoji(text: str) -> bool:
    return EMOJI.search(text) is not None


def strip_emoji(text: str) -> str:
    return EMOJI.sub("", text)


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Exact words, stems (``word*``) and phrases (entries with a space), matched over :class:`Tokens`."""

    words: frozenset[str]
    stems: tuple[str, ...]
    phrases: tuple[str, ...]
    #: phrases with a stem in them ("корейск* триллер*"): token-by-token prefixes
    stem_phrases: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, *entries: str) -> Lexicon:
        words: set[str] = set()
        stems: list[str] = []
        phrases: list[str] = []
        stem_phrases: list[tuple[str, ...]] = []
        for raw in entries:
            entry = normalise(raw).strip()
            if " " in entry and "*" in entry:
                stem_phrases.append(tuple(part.rstrip("*") for part in entry.split()))
            elif " " in entry or "-" in entry:
                phrases.append(" " + " ".join(_WORD.findall(entry)) + " ")
            elif entry.endswith("*"):
                stems.append(entry[:-1])
            else:
                words.add(entry)
        return cls(frozenset(words), tuple(stems), tuple(phrases), tuple(stem_phrases))

    def _stem_phrase_hits(self, toks: Tokens) -> list[str]:
        out: list[str] = []
        words = toks.words
        for parts in self.stem_phrases:
            n = len(parts)
            for i in range(len(words) - n + 1):
                if all(words[i + j].startswith(parts[j]) for j in range(n)):
                    out.append(" ".join(words[i : i + n]))
                    break
        return out

    def hits(self, toks: Tokens) -> list[str]:
        """The matching tokens and phrases, in text order for tokens, then phrases."""
        words, stems = self.words, self.stems
        out = [t for t in toks.words if t in words or (stems and t.startswith(stems))]
        out += [p.strip() for p in self.phrases if p in toks.joined]
        if self.stem_phrases:
            out += self._stem_phrase_hits(toks)
        return out

    def first(self, toks: Tokens) -> str | None:
        words, stems = self.words, self.stems
        for t in toks.words:
            if t in words or (stems and t.startswith(stems)):
                return t
        for p in self.phrases:
            if p in toks.joined:
                return p.strip()
        if self.stem_phrases:
            hits = self._stem_phrase_hits(toks)
            if hits:
                return hits[0]
        return None

    def count(self, toks: Tokens) -> int:
        return len(self.hits(toks))

    def matches_word(self, word: str) -> bool:
        return word in self.words or bool(self.stems and word.startswith(self.stems))


def language_of(text: str) -> str:
    """``ru`` when at least a third of the letters are Cyrillic, else ``en`` (the two languages the
    word lists and the graceful answers know)."""
    letters = cyrillic = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if "\u0400" <= ch <= "\u04ff":
                cyrillic += 1
    return "ru" if cyrillic and cyrillic * 3 >= letters else "en"

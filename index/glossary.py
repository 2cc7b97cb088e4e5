"""A curated Chinese-English glossary of the corpus's terms, for query expansion.

English questions share no words with Chinese passages, so BM25 cannot help them; the
glossary maps what an analyst types ("unicorns", "technology contract turnover") to the
terms the documents use (独角兽, 技术合同成交额). Chinese questions get the same help for
everyday wording the documents never use: 技术交易 finds 技术合同成交额 through the
optional ``zh_aliases`` column.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from index.errors import CorpusError


@dataclass(frozen=True, slots=True)
class GlossaryEntry:
    zh: str
    en: tuple[str, ...]
    category: str
    zh_aliases: tuple[str, ...] = ()


_TOKEN = re.compile(r"[A-Za-z0-9&]+")


def phrase_key(text: str) -> tuple[str, ...]:
    """Normalise an English phrase for matching: case, hyphens, plurals, British spelling.

    Acronyms keep their case so that "MOST" (the ministry) never matches "most".
    """
    return tuple(_normalise_word(word) for word in _TOKEN.findall(text))


def _normalise_word(word: str) -> str:
    if len(word) > 1 and word.isupper():
        return word
    word = word.lower()
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    if word.endswith("tre"):  # centre -> center
        word = word[:-3] + "ter"
    return word.replace("isation", "ization").replace("programme", "program")


def _keys(phrase: str) -> list[tuple[str, ...]]:
    """A phrase's key, plus the key without a leading place name for long official names
    ("Beijing International Talent Service Port" is also asked for without "Beijing")."""
    key = phrase_key(phrase)
    if not key:
        return []
    if len(key) >= 3 and key[0] in ("beijing", "china", "chinese"):
        return [key, key[1:]]
    return [key]


class Glossary:
    """English phrase -> Chinese terms, matched on normalised word sequences."""

    def __init__(self, entries: list[GlossaryEntry]) -> None:
        self.entries = entries
        phrases: dict[tuple[str, ...], list[str]] = {}
        for entry in entries:
            for phrase in entry.en:
                for key in _keys(phrase):
                    if entry.zh not in phrases.setdefault(key, []):
                        phrases[key].append(entry.zh)
        self._phrases = phrases
        self._longest = max((len(key) for key in phrases), default=0)
        self._words = {word.lower() for key in phrases for word in key}
        self._aliases = [(alias, entry.zh) for entry in entries for alias in entry.zh_aliases]
        # Longest first: at each position the alternation takes the longest term.
        by_term = {e.zh: e for e in sorted(entries, key=lambda e: len(e.zh), reverse=True)}
        self._by_term = by_term
        self._terms = re.compile("|".join(map(re.escape, by_term))) if by_term else None

    def has_phrase(self, phrase: str) -> bool:
        """Whether ``phrase`` is one of the glossary's English phrases (as normalised)."""
        key = phrase_key(phrase)
        return any(k in self._phrases for k in _keys(phrase)) if key else False

    def knows(self, word: str) -> bool:
        """Whether an English word occurs in any glossary phrase (e.g. "huairou")."""
        return _normalise_word(word).lower() in self._words

    @classmethod
    def load(cls, path: Path) -> Glossary:
        """Read ``zh<TAB>en<TAB>category[<TAB>zh_aliases]`` lines; ``en`` and ``zh_aliases``
        hold variants separated by ``|``.

        A missing file is an empty glossary (expansion is an optional refinement).
        """
        if not path.exists():
            return cls([])
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            entries = [
                GlossaryEntry(
                    zh=row["zh"].strip(),
                    en=_variants(row["en"]),
                    category=(row.get("category") or "").strip(),
                    zh_aliases=_variants(row.get("zh_aliases") or ""),
                )
                for row in rows
            ]
        except (KeyError, AttributeError, csv.Error) as exc:
            raise CorpusError(f"glossary {path} is malformed: {exc}") from exc
        return cls([e for e in entries if e.zh and e.en])

    @property
    def chinese_terms(self) -> list[str]:
        return [entry.zh for entry in self.entries]

    def entries_in(self, text: str) -> list[GlossaryEntry]:
        """The entries whose Chinese term ``text`` contains, once each, in order of
        position; where terms overlap, the longest (国家实验室 rather than 实验室)."""
        if self._terms is None:
            return []
        found = (self._by_term[m.group()] for m in self._terms.finditer(text))
        return list(dict.fromkeys(found))

    def expand(self, question: str) -> list[str]:
        """Chinese terms for the English phrases in ``question`` (in order of mention), then
        the documents' terms for Chinese everyday wording the question uses instead."""
        words = phrase_key(question)
        terms: list[str] = []
        for i in range(len(words)):
            for n in range(min(self._longest, len(words) - i), 0, -1):
                for term in self._phrases.get(words[i : i + n], ()):
                    if term not in terms:
                        terms.append(term)
        for alias, term in self._aliases:
            if alias in question and term not in question and term not in terms:
                terms.append(term)
        return terms


def _variants(cell: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in cell.split("|") if v.strip())

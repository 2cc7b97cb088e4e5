"""Which documents a question names: "the work plan", "这份方案", "the Beijing review".

Staff refer to a document by its kind rather than its title. A kind word in the question
points to the catalog documents whose title is of that kind, and is no longer a word the
answer must contain (the review says "工作方案" about other plans). A title quoted in
《》 that is no catalog document's names a document the catalog cannot describe (the
review cites plans it is not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from index.documents import DocumentMeta


@dataclass(frozen=True, slots=True)
class _Kind:
    question_zh: re.Pattern[str]
    question_en: re.Pattern[str]
    title: re.Pattern[str]


_KINDS = (
    _Kind(
        re.compile(r"(?:工作)?方案"),
        re.compile(r"(?<!five-year )\b(?:work )?plan\b", re.IGNORECASE),
        re.compile(r"方案|\bplan\b(?! period)", re.IGNORECASE),
    ),
    _Kind(
        re.compile(r"回顾|总结"),
        re.compile(r"\breview\b", re.IGNORECASE),
        re.compile(r"回顾|\breview\b", re.IGNORECASE),
    ),
    _Kind(
        re.compile(r"通知"),
        re.compile(r"\bnotice\b", re.IGNORECASE),
        re.compile(r"通知|\bnotice\b", re.IGNORECASE),
    ),
    _Kind(
        re.compile(r"条例"),
        re.compile(r"\bregulations?\b", re.IGNORECASE),
        re.compile(r"条例|\bregulations?\b", re.IGNORECASE),
    ),
)


_QUOTED_TITLE = re.compile(r"《([^《》]{2,80})》")


@dataclass(frozen=True, slots=True)
class References:
    """The documents a question names, and the words that named them."""

    documents: frozenset[str]
    words: tuple[re.Pattern[str], ...]
    titles: frozenset[str] = frozenset()
    """The named documents' Chinese titles, without whitespace."""
    elsewhere: frozenset[str] = frozenset()
    """Titles the question quotes (《…》) that are part of no catalog document's title."""

    @classmethod
    def none(cls) -> References:
        return cls(frozenset(), ())

    def is_naming(self, term: str) -> bool:
        """Whether ``term`` only names a document ("工作方案", or a named document's whole
        title): no sentence needs to contain it, and searching for it finds the title."""
        return "".join(term.split()) in self.titles or any(
            pattern.fullmatch(term) for pattern in self.words
        )


class DocumentKinds:
    """The catalog's documents grouped by kind, worked out once per catalog."""

    def __init__(self, catalog: Iterable[DocumentMeta]) -> None:
        metas = list(catalog)
        self._titles = {m.id: "".join(m.title_zh.split()) for m in metas}
        self._fitting: list[frozenset[str]] = []
        for kind in _KINDS:
            fitting = {m.id for m in metas if kind.title.search(f"{m.title_zh} {m.title_en}")}
            # A kind that fits every document, or none, tells nothing apart.
            self._fitting.append(frozenset(fitting if len(fitting) < len(metas) else ()))

    def named(self, text: str, language: str) -> References:
        """The documents ``text`` refers to by kind."""
        documents: set[str] = set()
        words: list[re.Pattern[str]] = []
        for kind, fitting in zip(_KINDS, self._fitting, strict=True):
            pattern = kind.question_zh if language == "zh" else kind.question_en
            if fitting and pattern.search(text):
                documents |= fitting
                words.append(kind.question_zh)
        titles = frozenset(self._titles[d] for d in documents if self._titles[d])
        quoted = {"".join(title.split()) for title in _QUOTED_TITLE.findall(text)}
        elsewhere = frozenset(
            title for title in quoted if not any(title in own for own in self._titles.values())
        )
        return References(frozenset(documents), tuple(words), titles, elsewhere)

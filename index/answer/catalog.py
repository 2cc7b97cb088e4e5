"""Answers about a document itself (who issued it, when, its number, its title), from the
catalog, quoted where the document's own text states the same thing.

The catalog entry is what an editor recorded; the quote is where a reader can check it
(the header of a notice, the issuer line under a title). A fact the catalog does not hold
(a review without a date) is "not stated".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from index.answer.question import Aspect
from index.documents import Document
from index.normalise import find_ignoring_whitespace

_BILINGUAL = re.compile(r"^(?P<zh>[^()（）]+?)\s*[(（](?P<en>[^()（）]+)[)）]\s*$")


@dataclass(frozen=True, slots=True)
class CatalogFact:
    """One catalog field of a document: its value, an English rendering, and where the
    document's text states it (``None`` when it does not, word for word)."""

    aspect: Aspect
    value: str
    english: str
    span: tuple[int, int] | None


def catalog_facts(document: Document, aspects: tuple[Aspect, ...]) -> list[CatalogFact]:
    """The asked facts that the catalog holds for ``document``, in the order asked."""
    facts = []
    for aspect in aspects:
        value, english = _field(document, aspect)
        if value:
            span = find_ignoring_whitespace(document.text, value)
            facts.append(CatalogFact(aspect, value, english, span))
    return facts


def _field(document: Document, aspect: Aspect) -> tuple[str, str]:
    """(value in the document's language, English) of one catalog field; empty if unset."""
    meta = document.meta
    if aspect is Aspect.TITLE:
        return meta.title_zh or meta.title_en, meta.title_en
    if aspect is Aspect.ISSUER:
        match = _BILINGUAL.match(meta.issuer)
        return (match["zh"], match["en"]) if match else (meta.issuer, meta.issuer)
    if aspect is Aspect.NUMBER:
        return meta.number or "", meta.number or ""
    if meta.date:  # ISO date, as the catalog keeps it; documents write 2023年5月8日
        year, month, day = (int(part) for part in meta.date.split("-"))
        return f"{year}年{month}月{day}日", f"{_MONTHS[month - 1]} {day}, {year}"
    return "", ""


_MONTHS = (
    "January February March April May June July August September October November December"
).split()

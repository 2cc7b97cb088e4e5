"""A reading aid for English readers of a Chinese answer, built only from the quoted text.

No translation model is available offline, and a generated translation could be wrong in
ways a reader cannot see. The aid lists what can be looked up instead: the glossary's
English for the Chinese terms the answer contains, and the answer's figures in English
(9865亿元 → 986.5 billion yuan). Beyond the glossary, nothing in it can be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from index.answer.figures import find_figures
from index.glossary import Glossary


@dataclass(frozen=True, slots=True)
class Gloss:
    """A piece of the answer as written, and its English."""

    text: str
    english: str


@dataclass(frozen=True, slots=True)
class ReadingAid:
    terms: tuple[Gloss, ...]
    """Glossary terms in the answer, in order of appearance."""
    figures: tuple[Gloss, ...]
    """Figures in the answer, with their units, in order of appearance."""
    catalog: tuple[Gloss, ...] = ()
    """For an answer from the catalog: the English the catalog records."""


def reading_aid(text: str, glossary: Glossary, catalog: tuple[Gloss, ...] = ()) -> ReadingAid:
    """The aid for an answer whose quoted Chinese text is ``text``. A catalog answer
    carries the catalog's English, which its terms would only repeat; a figure that reads
    the same in English (2020年) needs no gloss."""
    terms = () if catalog else glossary.entries_in(text)
    return ReadingAid(
        terms=tuple(Gloss(entry.zh, entry.en[0]) for entry in terms),
        figures=tuple(
            Gloss(figure.text, figure.english)
            for figure in find_figures(text)
            if figure.english != figure.text.removesuffix("年")
        ),
        catalog=catalog,
    )

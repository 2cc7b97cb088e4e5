"""Whether the chosen sentences state what was asked, or the documents do not say.

On-topic questions about a fact the documents do not give (a valuation where they give a
count, a year they do not cover, another city) are close in meaning to many passages, so a
similarity floor alone cannot catch them. Each check below names one way an answer can fall
short; any of them makes the answer "not stated", with its reason. A low ``support`` (how
much of the question the answer shares) is the last, tunable check: its threshold is the
operating point, chosen on the dev split to keep answerable questions answered.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from index.answer.figures import Kind
from index.answer.question import Question
from index.answer.select import Candidate, QuestionTerms

PLACES_PATH = Path(__file__).with_name("places.tsv")
TOPIC_SHARE = 0.3
"""An answer to a question asking for a figure must share at least this share of the
question's words that the closest sentence shares."""
SUBJECT_SHARE = 0.5
"""An answer to "how many X" must contain at least this share of X's words when another
of the closest sentences contains them all."""
SPECIFIC_IDF = 1.0
"""Words more common than this (北京, 发展, 企业) do not count towards being on topic."""
SIMILARITY_FLOOR = {"zh": 0.86, "en": 0.0}
COVERAGE_FLOOR = {"zh": 0.25, "en": 0.25}
"""A question is off the documents' topics (the weather, a greeting) when the closest
sentence is below both floors: it shares few of the question's specific words, and its
cosine is below that of any answerable dev question. Chosen on the dev split, with
off-topic questions. English questions meet Chinese sentences at cosines that do not
separate off-topic questions from everyday wording: for them only a question with no
specific word at all (a greeting, "How do I renew my passport?") is off topic."""
SIMILARITY_WEIGHT = 10.0
"""Scales a cosine gap to the coverage scale in ``support``."""
MIN_SUPPORT = 0.0
"""The operating point: answers whose support is below it are "not stated"."""

_QUOTED = re.compile(r"[“\"《「『]([^”\"》」』]{2,40})[”\"》」』]|'([A-Za-z][^']{2,40})'")
_MIN_TAGGED_NAME = 3
LATIN_NAME = re.compile(r"\b[A-Z][A-Za-z]{2,}\b")
_NOW = re.compile(r"目前|现在|截至目前|当前|如今")
"""A sentence about the present is dated: it answers no question about another year."""


class Reason(StrEnum):
    """Why an answer is "not stated"."""

    UNKNOWN_NAME = "unknown_name"
    """The question names a place, organisation or programme the documents never mention."""
    YEAR = "year"
    """The question names a year or plan period the answer does not cover."""
    FIGURE = "figure"
    """The question asks for a kind of figure (an amount, a count, a share, a date) that the
    closest sentences do not give."""
    CATALOG = "catalog"
    """The question asks for a fact about a document that its catalog entry lacks."""
    WEAK = "weak"
    """The closest sentences share too little with the question."""
    NO_PASSAGES = "no_passages"


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason, with what it is about (a name, a year, a kind of figure)."""

    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Place:
    zh: str
    en: tuple[str, ...]
    forms: tuple[str, ...]
    """The Chinese name and the other forms the documents may use (津冀 for Tianjin)."""


@cache
def places(path: Path = PLACES_PATH) -> tuple[Place, ...]:
    """Provinces, major cities and countries, in Chinese and English."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return tuple(
        Place(
            zh=row["zh"],
            en=tuple(v for v in row["en"].split("|") if v),
            forms=(row["zh"], *(v for v in (row.get("also") or "").split("|") if v)),
        )
        for row in rows
    )


def unknown_names(
    question: Question,
    *,
    tagged: Iterable[tuple[str, str]],
    expansions: list[str],
    known: Callable[[str], bool],
    glossary_knows: Callable[[str], bool],
    glossary_phrase: Callable[[str], bool],
) -> list[str]:
    """Names in the question that no passage mentions.

    Names are places (from ``places.tsv``), quoted names (“海聚工程”, 'Beijing Scholars'),
    organisations jieba tags as such, and capitalised Latin words inside an English
    sentence (Baidu, Lenovo). A name the glossary knows, or whose Chinese form a passage
    uses, is not unknown.

    Args:
        question: the question as read.
        tagged: (word, part-of-speech flag) pairs from jieba's tagger.
        expansions: glossary terms the question expanded to.
        known: whether a passage uses a Chinese term.
        glossary_knows: whether an English word occurs in a glossary phrase.
        glossary_phrase: whether an English phrase is a glossary phrase.
    """
    text = question.text
    found: list[str] = []

    def unknown(name: str) -> None:
        if name not in found:
            found.append(name)

    for place in _mentioned_places(text):
        # Another form counts only through the glossary ("Tianjin and Hebei" is 津冀); the
        # documents' 津冀 does not say anything about 天津 alone.
        if not known(place.zh) and not any(form in expansions for form in place.forms):
            unknown(place.zh if place.zh in text else next(e for e in place.en if e in text))
    for match in _QUOTED.finditer(text):
        name = match.group(1) or match.group(2)
        if name.isascii():
            # A quoted English name (capitalised) that is no glossary phrase and has a word
            # the documents never use.
            words = re.findall(r"\b[A-Z][A-Za-z]{2,}", name)
            if words and not glossary_phrase(name) and not all(known(w.lower()) for w in words):
                unknown(name)
        elif not known(name):
            unknown(name)
    for word, flag in tagged:
        # jieba's dictionary tags organisations (nt) well; its other names (nz) include
        # common phrases (重大成果), so those count only when no character pair is known.
        named = flag == "nt" or (flag == "nz" and not any(known(b) for b in _pairs(word)))
        if named and len(word) >= _MIN_TAGGED_NAME and not known(word):
            unknown(word)
    for match in LATIN_NAME.finditer(text):
        word = match.group()
        if text[: match.start()].strip() and not glossary_knows(word) and not known(word.lower()):
            unknown(word)  # a capitalised word inside a sentence: Baidu, Lenovo
    return found


def not_stated(
    question: Question,
    answer: list[Candidate],
    *,
    names: list[str],
    topic: QuestionTerms,
    subject: QuestionTerms,
    subject_forms: list[str],
    found: list[Candidate],
    catalog: Callable[[Candidate], str],
    opening: Callable[[Candidate], str],
) -> list[Finding]:
    """Every reason the chosen sentences fall short of the question (empty: stated).

    Args:
        question: the question as read.
        answer: the chosen sentences.
        names: the question's unknown names (``unknown_names``).
        topic: the question's own terms (its words, or for English its glossary terms,
            not the general vocabulary).
        subject: the words of what a counting or measuring question is about.
        subject_forms: that thing as the documents would name it (the Chinese subject
            itself, or the glossary's term for an English one).
        found: every candidate sentence.
        catalog: the catalog entry of a sentence's document (a notice's year is its date's).
        opening: the opening lines of a sentence's document (where a review says which
            period it covers).
    """
    findings = [Finding(Reason.UNKNOWN_NAME, name) for name in names]
    if not answer:
        return [*findings, Finding(Reason.NO_PASSAGES)]
    first = answer[0]
    quoted = "".join(c.text for c in answer)
    dated = Kind.DATE in frozenset().union(*(c.figures for c in answer)) or bool(
        _NOW.search(quoted)
    )
    # A year the question names must be in the answer; if the answer names no year, in
    # its context (under a heading such as "到2025年").
    context = quoted if dated else first.context
    entry, start = catalog(first), opening(first)
    findings += [
        Finding(Reason.YEAR, year)
        for year in question.years
        if year not in context and year not in entry
    ]
    findings += [
        Finding(Reason.YEAR, period)
        for period in question.periods
        if period not in context and period not in entry and period not in start
    ]
    given = frozenset().union(*(c.figures for c in answer))
    # The figure must be about what was asked: an answer sharing much less of the question
    # than the closest sentence does is a figure about something else (a count of 科技企业
    # for a question about 高新技术企业).
    best = max((topic.coverage(c.text) for c in found), default=0.0)
    off_topic = max(topic.coverage(c.text) for c in answer) < TOPIC_SHARE * best
    # A figure about something else, while the closest passages name the thing asked about
    # without a figure (332家外资研发中心, for 高新技术企业, which only "rank first").
    named_elsewhere = any(form in c.text for form in subject_forms for c in found)
    if subject.weights and named_elsewhere:
        off_topic |= max(subject.coverage(c.text) for c in answer) < SUBJECT_SHARE
    findings += [
        Finding(Reason.FIGURE, min(kinds))
        for kinds in question.required
        if not kinds & given or off_topic
    ]
    return findings


def support(answer: list[Candidate], question: Question, terms: QuestionTerms) -> float:
    """How far the answer is from looking off-topic: above zero when it shares enough of
    the question's words (rarity-weighted) or is close enough in meaning, below zero when
    neither (see ``COVERAGE_FLOOR``). Comparable across questions of one language."""
    if not answer:
        return float("-inf")
    language = question.language
    specific = terms.specific(SPECIFIC_IDF)
    if not specific.weights:  # nothing in the question a passage could share
        return -1.0
    words = max(specific.coverage(c.text) for c in answer) - COVERAGE_FLOOR[language]
    similarity = max(c.similarity for c in answer)
    if not similarity:  # lexical mode: without cosines, only the check above applies
        return words + COVERAGE_FLOOR[language]
    return max(words, SIMILARITY_WEIGHT * (similarity - SIMILARITY_FLOOR[language]))


def _pairs(word: str) -> list[str]:
    return [word[i : i + 2] for i in range(len(word) - 1)]


def _mentioned_places(text: str) -> list[Place]:
    """The places ``text`` names in Chinese or English."""
    names = _place_names()
    return [names[m.group()] for m in _place_pattern().finditer(text)]


@cache
def _place_names() -> dict[str, Place]:
    return {name: place for place in places() for name in (place.zh, *place.en)}


@cache
def _place_pattern() -> re.Pattern[str]:
    """One pattern for every place name, longest first; English ones as whole words."""
    names = sorted(_place_names(), key=len, reverse=True)
    alternatives = [re.escape(n) if not n.isascii() else rf"\b{re.escape(n)}\b" for n in names]
    return re.compile("|".join(alternatives))

"""Which sentence of the top passages answers the question.

Every sentence of the first few passages is a candidate, scored by what it shares with the
question (its dense cosine, which the search already computed for each sentence vector,
and the rarity-weighted share of the question's words it contains), by whether it gives
what the question asks for (an amount, a count, a date, a list, a target), and by its
passage's rank. Section headings and lead-ins ("实现“五个全球前列”。") announce an answer
rather than give one: picked, they bring the sentence after them. A notice's preamble,
which names the document's own title, is never the answer to what the document says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from index.answer.figures import Kind, kinds_in
from index.answer.question import Asks, Question
from index.chunking import sentence_spans
from index.retriever import Hit
from index.structure import PATH_SEPARATOR

ANSWER_PASSAGES = 5
"""Passages whose sentences may answer; the widget shows five, so evaluation sees the same."""

# Weights of one candidate's score (chosen on the dev split; see the README's answer table).
SIMILARITY_WEIGHT = 8.0
"""Per unit of cosine below the best sentence's: cosines of the top sentences differ by
hundredths, so a small gap must weigh about as much as a word in common."""
COVERAGE_WEIGHT = 1.0
FIGURE_WEIGHT = 0.6
"""Gives the kind of figure asked for (an amount for "how much money", a count, ...);
half as much for "how much" or "多少" without a kind."""
SHAPE_WEIGHT = 0.12
"""Has the shape the question asks for: a target for goals, an enumeration for lists."""
YEAR_WEIGHT = 0.2
"""The sentence's context names the year the question asks about."""
CONTEXT_CHARS = 800
"""How much of the document before a passage counts as its context."""
DOCUMENT_WEIGHT = 0.3
"""The sentence is in the document the question names ("the work plan", "这份方案")."""
PREAMBLE_PENALTY = 0.5
"""The sentence names its own document's title (a notice's preamble): it says what the
document is, not what it says."""
RANK_PENALTY = 0.03
UNREACHED_SIMILARITY_GAP = 0.02
"""A sentence the dense search did not reach scores this far below the weakest it did."""

_HEADING = re.compile(r"^(?:[一二三四五六七八九十]+、|（[一二三四五六七八九十]+）|\d+[.．、]|——)")
_LEAD_IN_CHARS = 24
_GOAL = re.compile(r"到20\d\d年|目标|力争|基本形成|基本建成|初步形成|成为|达到|打造|建成|迈向")
_ENUMERATION = re.compile(r"、.+、|[“《].+[”》].*[“《].+[”》]|等\d*[家个项只所]|包括|即")
_NAME = re.compile(r"[“《][^”》]{2,30}[”》]|[A-Za-z]{2,}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One sentence of a top passage, with what its score is made of."""

    rank: int
    doc_id: str
    start: int
    end: int
    text: str
    position: int
    """Index of the sentence within its passage."""
    context: str
    """The passage with its section path and the document text before it: where a year the
    question names is looked for (a plan's "到2025年" heads the targets listed under it)."""
    similarity: float
    coverage: float
    figures: frozenset[Kind]
    lead_in: bool
    """A heading or short lead-in: what answers it is the sentence after it."""
    preamble: bool


@dataclass(frozen=True, slots=True)
class QuestionTerms:
    """The question's content words, weighted by rarity (BM25's idf)."""

    weights: dict[str, float]

    def coverage(self, text: str) -> float:
        """Share of the weight whose words ``text`` contains (0 with no words)."""
        total = sum(self.weights.values())
        return self.matched(text) / total if total else 0.0

    def matched(self, text: str) -> float:
        """The weight of the words ``text`` contains."""
        lowered = text.lower()
        return sum(w for term, w in self.weights.items() if term in lowered)

    def specific(self, min_idf: float) -> QuestionTerms:
        """Only the words rarer than ``min_idf``: 北京 or 发展 alone says nothing about
        whether a sentence is on the question's topic."""
        return QuestionTerms({t: w for t, w in self.weights.items() if w >= min_idf})


def question_terms(
    question: Question,
    expansions: list[str],
    words: list[str],
    *,
    idf: Callable[[str], float],
    known: Callable[[str], bool],
) -> QuestionTerms:
    """Weights for the words a passage would share with the question.

    A Chinese question counts its own words (one the corpus never uses weighs most and is
    matched by no sentence: a sign the documents do not say); an English question counts
    the glossary's Chinese terms it expanded to, plus its words the corpus itself uses
    (AI, R&D, 6G), since its English words cannot appear in Chinese sentences.

    Args:
        question: the question as read.
        expansions: glossary terms the retriever added.
        words: the question's content words (``Tokenizer.words``).
        idf: BM25 idf of a term over the passages.
        known: whether any passage uses a term.
    """
    if question.language == "zh":
        chosen = [*words, *expansions]
    else:
        chosen = [*expansions, *(w for w in words if w.isascii() and known(w))]
    # Years and plan periods say when, not what: the year and period checks handle them.
    when = {*question.years, *question.periods}
    return QuestionTerms({term: idf(term) for term in dict.fromkeys(chosen) if term not in when})


def candidates(
    hits: list[Hit], terms: QuestionTerms, *, preceding: Callable[[str, int], str]
) -> list[Candidate]:
    """Every sentence of the first ``ANSWER_PASSAGES`` hits.

    Args:
        hits: the ranked passages.
        terms: the question's weighted words.
        preceding: the ``CONTEXT_CHARS`` of a document before an offset.
    """
    reached = [s for hit in hits[:ANSWER_PASSAGES] for s in hit.sentence_scores if s is not None]
    unreached = min(reached) - UNREACHED_SIMILARITY_GAP if reached else 0.0
    found: list[Candidate] = []
    for rank, hit in enumerate(hits[:ANSWER_PASSAGES], start=1):
        headings = {_compact(line) for line in hit.section.split(PATH_SEPARATOR)}
        title = _compact(hit.title)
        context = f"{preceding(hit.doc_id, hit.start)}\n{hit.section}\n{hit.text}"
        spans = sentence_spans(hit.text)
        scores = hit.sentence_scores or (None,) * len(spans)
        for position, ((start, end), similarity) in enumerate(zip(spans, scores, strict=False)):
            text = hit.text[start:end]
            opens_line = start == 0 or hit.text[start - 1] == "\n"
            found.append(
                Candidate(
                    rank=rank,
                    doc_id=hit.doc_id,
                    start=hit.start + start,
                    end=hit.start + end,
                    text=text,
                    position=position,
                    context=context,
                    similarity=unreached if similarity is None else similarity,
                    coverage=terms.coverage(text),
                    figures=kinds_in(text),
                    lead_in=_is_lead_in(text, opens_line, headings),
                    preamble=bool(title) and title in _compact(text),
                )
            )
    return found


def score(
    candidate: Candidate,
    question: Question,
    best_similarity: float,
    named_documents: frozenset[str] = frozenset(),
) -> float:
    """How well ``candidate`` answers ``question`` (higher is better; comparable within one
    question only). ``named_documents``: the documents the question refers to by name."""
    value = SIMILARITY_WEIGHT * (candidate.similarity - best_similarity)
    value += COVERAGE_WEIGHT * candidate.coverage
    if question.wanted & candidate.figures:
        value += FIGURE_WEIGHT / (2 if question.asks is Asks.QUANTITY else 1)
    if _has_shape(candidate.text, question.asks):
        value += SHAPE_WEIGHT
    if question.years and any(year in candidate.context for year in question.years):
        value += YEAR_WEIGHT
    if candidate.doc_id in named_documents:
        value += DOCUMENT_WEIGHT
    if candidate.preamble:
        value -= PREAMBLE_PENALTY
    return value - RANK_PENALTY * (candidate.rank - 1)


def choose(
    found: list[Candidate], question: Question, named_documents: frozenset[str] = frozenset()
) -> list[Candidate]:
    """The answer: the best candidate, with the sentence after it when it is a heading or
    lead-in, or when a two-part question's other part is answered right beside it.

    Returns:
        One or two adjacent sentences of one passage (empty without candidates).
    """
    if not found:
        return []
    best_similarity = max(c.similarity for c in found)
    scored = sorted(
        found, key=lambda c: score(c, question, best_similarity, named_documents), reverse=True
    )
    best = scored[0]
    neighbours = [c for c in found if c.rank == best.rank and abs(c.position - best.position) == 1]
    following = next((c for c in neighbours if c.position == best.position + 1), None)
    if best.lead_in and following is not None:
        return [best, following]
    if question.parts > 1 and neighbours:
        missing = question.wanted - best.figures
        helpful = [c for c in neighbours if missing & c.figures]
        if helpful:
            return sorted([best, helpful[0]], key=lambda c: c.position)
    return [best]


def _is_lead_in(text: str, opens_line: bool, headings: set[str]) -> bool:
    """A section heading, or a short line opener without figures ("实现“五个全球前列”。")."""
    if _compact(text) in headings or _HEADING.match(text):
        return True
    short = len(text.rstrip("。：:")) <= _LEAD_IN_CHARS
    return opens_line and short and not any(ch.isdigit() for ch in text)


def _compact(text: str) -> str:
    return "".join(text.split()).rstrip("。")


def _has_shape(text: str, asks: Asks) -> bool:
    if asks is Asks.GOAL:
        return bool(_GOAL.search(text))
    if asks is Asks.LIST:
        return bool(_ENUMERATION.search(text))
    if asks is Asks.WHO:
        return bool(_NAME.search(text) or _ENUMERATION.search(text))
    return False

"""The answer stage: a question and its search result in, a quoted answer or "not stated" out.

The service, the CLI's ``ask`` and the evaluation all answer through ``Answerer.answer``,
so what is measured is what a reader sees. An answer is one or two adjacent sentences
quoted from a passage (or, for a question about a document itself, the catalog fact where
the document states it), always with document offsets; English questions also get a
reading aid built from the quoted text and the glossary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from index.answer.catalog import CatalogFact, catalog_facts
from index.answer.decide import (
    MIN_SUPPORT,
    Finding,
    Reason,
    not_stated,
    support,
    unknown_names,
)
from index.answer.question import Question, read_question
from index.answer.reading_aid import Gloss, ReadingAid, reading_aid
from index.answer.select import (
    ANSWER_PASSAGES,
    CONTEXT_CHARS,
    Candidate,
    QuestionTerms,
    candidates,
    choose,
    question_terms,
)
from index.references import References

if TYPE_CHECKING:
    from index.documents import Document
    from index.glossary import Glossary
    from index.lexical import Tokenizer
    from index.retriever import Hit, SearchResult
    from index.searchable import Searchable

OPENING_CHARS = 400
"""How much of a document's start says what it is about (its title, issuer and first
paragraph): a review "of the 14th Five-Year Plan period" says so there."""


class Source(StrEnum):
    PASSAGES = "passages"
    CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class Quote:
    """A verbatim piece of a document: ``document.text[start:end] == text``."""

    doc_id: str
    start: int
    end: int
    text: str
    rank: int | None
    """The rank of the returned passage it lies in; None when no returned passage holds it."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the answer stage decided for one question."""

    question: Question
    quotes: tuple[Quote, ...]
    """The answer, quoted (empty when the documents do not state it)."""
    source: Source
    facts: tuple[Gloss, ...]
    """For an answer from the catalog: the catalog's values (with their English), which
    the quotes show where the document's text states them."""
    support: float
    """How much of the question the answer shares (the quantity the operating point cuts)."""
    findings: tuple[Finding, ...]
    """Why the documents do not state it (empty when they do)."""
    reading_aid: ReadingAid | None

    @property
    def stated(self) -> bool:
        return bool(self.quotes or self.facts) and not self.findings

    @property
    def text(self) -> str:
        """The quotes, each followed by its ``[rank]`` citation (the catalog's values where
        the document's text does not state them)."""
        quoted = "".join(f"{q.text}[{q.rank}]" if q.rank else q.text for q in self.quotes)
        return quoted or "；".join(fact.text for fact in self.facts)

    @property
    def citations(self) -> list[int]:
        return sorted({q.rank for q in self.quotes if q.rank})


class Answerer:
    """Answers questions from search results; holds nothing per question."""

    def __init__(
        self, *, tokenizer: Tokenizer, glossary: Glossary, vocabulary: Glossary | None = None
    ) -> None:
        """``vocabulary``: general words (机制 mechanism, 评价 evaluation) whose English an
        English question may use; they weigh in choosing a sentence, not in retrieval."""
        self.tokenizer = tokenizer
        self.glossary = glossary
        self.vocabulary = vocabulary

    def answer(self, result: SearchResult) -> Answer:
        """Answer the question ``result`` was searched for, from its hits."""
        snapshot = result.snapshot
        language = result.language
        question = read_question(language.text, language.language)
        hits = result.hits[:ANSWER_PASSAGES]
        references = result.references
        names = unknown_names(
            question,
            tagged=self.tokenizer.tagged(question.text),
            expansions=result.expansions,
            known=snapshot.lexical.knows,
            glossary_knows=self.glossary.knows,
            glossary_phrase=self.glossary.has_phrase,
        )
        if question.aspects and hits and not references.elsewhere:
            # The document the question names, else the one its best passage is from. A
            # document quoted by a title outside the catalog is answered from the passages.
            named = sorted(references.documents)
            document = snapshot.documents[named[0] if len(named) == 1 else hits[0].doc_id]
            facts = catalog_facts(document, question.aspects)
            return self._from_catalog(question, facts, hits, document, names)
        # The question's own terms say what it is about; with the general vocabulary an
        # English question shares, they choose the sentence.
        general = [w for w in self._general_words(question) if w not in result.expansions]
        words = self.tokenizer.words(question.text)
        topic = self._terms(question, result.expansions, words, references, snapshot)
        terms = (
            self._terms(question, [*result.expansions, *general], words, references, snapshot)
            if general
            else topic
        )

        def preceding(doc_id: str, start: int) -> str:
            return snapshot.documents[doc_id].text[max(0, start - CONTEXT_CHARS) : start]

        found = candidates(hits, terms, preceding=preceding)
        chosen = choose(found, question, references.documents)

        def catalog(candidate: Candidate) -> str:
            meta = snapshot.documents[candidate.doc_id].meta
            return " ".join(filter(None, (meta.title_zh, meta.title_en, meta.date, meta.number)))

        def opening(candidate: Candidate) -> str:
            return snapshot.documents[candidate.doc_id].text[:OPENING_CHARS]

        subject, subject_forms = self._subject(question, snapshot)
        findings = not_stated(
            question,
            chosen,
            names=names,
            topic=topic,
            subject=subject,
            subject_forms=subject_forms,
            found=found,
            catalog=catalog,
            opening=opening,
        )
        strength = support(chosen, question, terms)
        if not findings and strength < MIN_SUPPORT:
            findings.append(Finding(Reason.WEAK))
        quotes = tuple(Quote(c.doc_id, c.start, c.end, c.text, c.rank) for c in chosen)
        return Answer(
            question=question,
            quotes=quotes if not findings else (),
            source=Source.PASSAGES,
            facts=(),
            support=strength,
            findings=tuple(findings),
            reading_aid=self._aid(question, quotes) if not findings else None,
        )

    def _from_catalog(
        self,
        question: Question,
        facts: list[CatalogFact],
        hits: list[Hit],
        document: Document,
        names: list[str],
    ) -> Answer:
        """The asked catalog facts, each quoted where the document's text states it."""
        findings = [Finding(Reason.UNKNOWN_NAME, name) for name in names]
        asked = {fact.aspect for fact in facts}
        findings += [Finding(Reason.CATALOG, a.value) for a in question.aspects if a not in asked]
        if findings:
            return Answer(question, (), Source.CATALOG, (), 0.0, tuple(findings), None)
        quotes = tuple(q for fact in facts if (q := _catalog_quote(fact, hits, document)))
        glosses = tuple(Gloss(fact.value, fact.english) for fact in facts)
        aid = None
        if question.language == "en":
            aid = reading_aid("".join(q.text for q in quotes), self.glossary, glosses)
        return Answer(question, quotes, Source.CATALOG, glosses, 1.0, (), aid)

    def _terms(
        self,
        question: Question,
        expansions: list[str],
        words: list[str],
        references: References,
        snapshot: Searchable,
    ) -> QuestionTerms:
        """The question's weighted terms, less the words that only name a document."""
        found = question_terms(
            question,
            expansions,
            words,
            idf=snapshot.lexical.idf,
            known=snapshot.lexical.knows,
        )
        return QuestionTerms(
            {t: w for t, w in found.weights.items() if not references.is_naming(t)}
        )

    def _general_words(self, question: Question) -> list[str]:
        if question.language != "en" or self.vocabulary is None:
            return []
        return self.vocabulary.expand(question.text)

    def _subject(self, question: Question, snapshot: Searchable) -> tuple[QuestionTerms, list[str]]:
        """What a counting question is about: its weighted words, and its names as the
        documents would write them (the Chinese words themselves, or the glossary's term
        when the English is a glossary phrase)."""
        chinese = question.language == "zh"
        expansions = [] if chinese else self.glossary.expand(question.subject)
        terms = question_terms(
            question,
            expansions,
            self.tokenizer.words(question.subject) if chinese else [],
            idf=snapshot.lexical.idf,
            known=snapshot.lexical.knows,
        )
        if not question.subject:
            return terms, []
        if chinese:
            return terms, [question.subject]
        return terms, expansions[:1] if self.glossary.has_phrase(question.subject) else []

    def _aid(self, question: Question, quotes: tuple[Quote, ...]) -> ReadingAid | None:
        if question.language != "en" or not quotes:
            return None
        return reading_aid("".join(q.text for q in quotes), self.glossary)


def _catalog_quote(fact: CatalogFact, hits: list[Hit], document: Document) -> Quote | None:
    """The fact as the document's text states it, cited by the returned passage holding it
    (None when the text does not state it word for word)."""
    if fact.span is None:
        return None
    start, end = fact.span
    doc_id = document.id
    rank = next(
        (
            rank
            for rank, hit in enumerate(hits, start=1)
            if hit.doc_id == doc_id and hit.start <= start and end <= hit.end
        ),
        None,
    )
    return Quote(doc_id, start, end, document.text[start:end], rank)

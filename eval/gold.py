"""Gold questions: loading (any file in the documented format), validation, and where the
evidence lies in the documents.

One JSON object per line::

    {"id": "dev-zh-001", "split": "dev", "lang": "zh", "question": "北京独角兽企业有多少家？",
     "answer": "115家", "evidence": ["北京独角兽企业数量115家"], "doc_id": "bjsti-review-14fyp",
     "type": "number", "answerable": true}

``evidence`` holds spans quoted from document ``doc_id``; they are matched ignoring
whitespace, so spans copied from PDF-extracted text still locate in the normalised text.
An unanswerable question has ``"answerable": false``, no evidence and ``"doc_id": null``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from index.chunking import Chunk
from index.documents import Document
from index.errors import InvalidInputError
from index.normalise import find_ignoring_whitespace

GOLD_PATH = Path(__file__).with_name("gold.jsonl")
Split = Literal["dev", "test"]
# A passage counts as evidence when it holds at least this share of an evidence span.
MIN_SPAN_OVERLAP = 0.5


class GoldFormatError(InvalidInputError):
    """A gold file line that does not follow the format; the message names the line."""


class _GoldLine(BaseModel):
    """One line of a gold file, as written."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1)
    split: Split
    lang: Literal["zh", "en"]
    question: str = Field(min_length=1)
    answer: str
    evidence: list[str]
    doc_id: str | None
    type: str = Field(min_length=1)
    answerable: bool

    @model_validator(mode="after")
    def _evidence_matches_answerable(self) -> _GoldLine:
        if self.answerable and not (self.evidence and self.doc_id):
            raise ValueError("an answerable question needs doc_id and at least one evidence span")
        if not self.answerable and (self.evidence or self.doc_id is not None):
            raise ValueError("an unanswerable question has no evidence and doc_id null")
        return self


@dataclass(frozen=True, slots=True)
class GoldItem:
    """One gold question; unanswerable ones have no doc_id and no evidence."""

    id: str
    split: Split
    lang: Literal["zh", "en"]
    question: str
    answer: str
    evidence: tuple[str, ...]
    doc_id: str | None
    type: str
    answerable: bool


def load_gold(path: Path = GOLD_PATH, *, split: Split | None = None) -> list[GoldItem]:
    """Read a gold file, optionally one split (``dev`` tunes settings, ``test`` is held out).

    Raises:
        GoldFormatError: a line is not JSON, or not a gold question (its number and what is
            wrong are in the message), or an id repeats.
    """
    items: list[GoldItem] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldFormatError(f"{path}: cannot read the gold file: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            raw = _GoldLine.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise GoldFormatError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()
            )
            raise GoldFormatError(f"{where}: {problems}") from exc
        if raw.id in seen:
            raise GoldFormatError(f"{where}: id {raw.id!r} repeats line {seen[raw.id]}")
        seen[raw.id] = number
        fields = raw.model_dump()
        items.append(GoldItem(**{**fields, "evidence": tuple(raw.evidence)}))
    return [item for item in items if split is None or item.split == split]


def locate(text: str, span: str) -> tuple[int, int] | None:
    """Find ``span`` in ``text`` ignoring whitespace; return its (start, end) in ``text``."""
    return find_ignoring_whitespace(text, span)


def validate(items: list[GoldItem], documents: dict[str, Document]) -> list[str]:
    """Every problem that needs the documents, as readable lines (empty when valid)."""
    problems: list[str] = []
    for item in items:
        if item.doc_id is None:
            continue
        document = documents.get(item.doc_id)
        if document is None:
            problems.append(f"{item.id}: unknown document {item.doc_id}")
            continue
        problems.extend(
            f"{item.id}: evidence not in {item.doc_id}: {span!r}"
            for span in item.evidence
            if locate(document.text, span) is None
        )
    return problems


def evidence_spans(item: GoldItem, documents: dict[str, Document]) -> list[tuple[int, int]]:
    """Character spans of the item's evidence in its document's normalised text."""
    if item.doc_id is None or item.doc_id not in documents:
        return []
    text = documents[item.doc_id].text
    return [span for span in (locate(text, e) for e in item.evidence) if span is not None]


def relevant_chunk_ids(
    item: GoldItem, documents: dict[str, Document], chunks: list[Chunk]
) -> set[str]:
    """Passages holding at least half of one evidence span."""
    spans = evidence_spans(item, documents)
    relevant = set()
    for chunk in chunks:
        if chunk.doc_id != item.doc_id:
            continue
        for start, end in spans:
            overlap = min(end, chunk.end) - max(start, chunk.start)
            if overlap >= MIN_SPAN_OVERLAP * (end - start):
                relevant.add(chunk.chunk_id)
    return relevant

"""The gold question set: loading, validation, and evidence located in the index.

Evidence spans are quoted from the documents; they are matched ignoring whitespace so
that spans copied from PDF-extracted text still locate exactly in the normalised text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from index.chunking import Chunk
from index.documents import Document

GOLD_PATH = Path(__file__).with_name("gold.jsonl")
Split = Literal["dev", "test"]
# A passage counts as evidence when it holds at least this share of an evidence span.
MIN_SPAN_OVERLAP = 0.5
_WHITESPACE = re.compile(r"\s+")


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
    """Read the gold set, optionally one split (``dev`` tunes settings, ``test`` is held out)."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            raw["evidence"] = tuple(raw["evidence"])
            items.append(GoldItem(**raw))
    return [item for item in items if split is None or item.split == split]


def locate(text: str, span: str) -> tuple[int, int] | None:
    """Find ``span`` in ``text`` ignoring whitespace; return its (start, end) in ``text``."""
    positions = [i for i, ch in enumerate(text) if not ch.isspace()]
    compact = "".join(text[i] for i in positions)
    needle = _WHITESPACE.sub("", span)
    found = compact.find(needle) if needle else -1
    if found < 0:
        return None
    return positions[found], positions[found + len(needle) - 1] + 1


def validate(items: list[GoldItem], documents: dict[str, Document]) -> list[str]:
    """Every problem with the gold set, as readable lines (empty when valid)."""
    problems: list[str] = []
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            problems.append(f"{item.id}: duplicate id")
        seen.add(item.id)
        if item.answerable != bool(item.evidence) or item.answerable != (item.doc_id is not None):
            problems.append(f"{item.id}: answerable items need doc_id and evidence, others none")
            continue
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

"""Structure-aware chunking with exact character offsets.

Chunks never straddle two sections, prefer Chinese sentence ends over commas, and a bare
heading is glued to the body after it. Every chunk is a slice of the document's
normalised text: ``document.text[chunk.start:chunk.end] == chunk.text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from index.documents import Document
from index.structure import PATH_SEPARATOR, split_sections

# Paragraphs first, then sentence ends, then clause marks; "" lets a run-on sentence split.
SEPARATORS = ["\n", "。", "！", "？", "；", "!", "?", ";", "，", ",", "、", " ", ""]
_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]*")
# Fragments shorter than this ("。", "1.") say nothing on their own; they join a neighbour.
MIN_SENTENCE_CHARS = 6
MAX_SENTENCES = 1023


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage: the unit that is embedded, indexed, retrieved and cited."""

    chunk_id: str
    doc_id: str
    ordinal: int
    section: tuple[str, ...]
    start: int
    end: int
    text: str

    @property
    def section_label(self) -> str:
        return PATH_SEPARATOR.join(self.section)

    @property
    def context_text(self) -> str:
        """What gets embedded and tokenised: the section path gives a passage its context."""
        return f"{self.section_label}\n{self.text}" if self.section else self.text

    @property
    def sentences(self) -> list[tuple[int, int]]:
        """Sentence spans relative to ``text`` (see ``sentence_spans``)."""
        return sentence_spans(self.text)

    def embedding_texts(self) -> list[str]:
        """The passage with its context, then each sentence: one vector each.

        A short question matches one sentence far better than a 300-character passage,
        so a passage is scored by its best vector; the winning sentence is also the
        extractive answer.
        """
        return [self.context_text, *(self.text[a:b] for a, b in self.sentences)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split on Chinese/English sentence ends and line breaks; merge tiny fragments."""
    spans: list[tuple[int, int]] = []
    for match in _SENTENCE.finditer(text):
        start, end = match.start(), match.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end - start >= MIN_SENTENCE_CHARS or not spans:
            spans.append((start, end))
        else:
            spans[-1] = (spans[-1][0], end)
    if len(spans) > 1 and spans[0][1] - spans[0][0] < MIN_SENTENCE_CHARS:
        spans[:2] = [(spans[0][0], spans[1][1])]
    return spans[:MAX_SENTENCES]


def chunk_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}:{ordinal:04d}"


def chunk_document(
    document: Document, *, chunk_size: int, chunk_overlap: int, min_chars: int
) -> list[Chunk]:
    """Cut a document into passages.

    Args:
        document: the normalised document.
        chunk_size: target maximum characters per chunk.
        chunk_overlap: characters shared by neighbouring chunks of one section.
        min_chars: pieces shorter than this are merged into a neighbour.

    Returns:
        Chunks in document order with ids ``{doc_id}:{ordinal}``.
    """
    splitter = RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        keep_separator="end",
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        strip_whitespace=False,
    )
    text = document.text
    spans: list[tuple[tuple[str, ...], int, int]] = []
    pending_start: int | None = None
    for section in split_sections(text):
        if not section.has_body:
            pending_start = section.start if pending_start is None else pending_start
            continue
        start = section.start if pending_start is None else pending_start
        pending_start = None
        for piece_start, piece_end in _merge_small(
            _locate(text, start, section.end, splitter), min_chars
        ):
            spans.append((section.path, piece_start, piece_end))
    return [
        Chunk(
            chunk_id=chunk_id(document.id, ordinal),
            doc_id=document.id,
            ordinal=ordinal,
            section=path,
            start=start,
            end=end,
            text=text[start:end],
        )
        for ordinal, (path, start, end) in enumerate(spans)
    ]


def _locate(
    text: str, start: int, end: int, splitter: RecursiveCharacterTextSplitter
) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` and return each piece's trimmed absolute span."""
    spans: list[tuple[int, int]] = []
    cursor = start
    for piece in splitter.split_text(text[start:end]):
        stripped = piece.strip()
        if not stripped:
            continue
        # Overlapping pieces begin before the previous one ends; search from its start.
        search_from = spans[-1][0] + 1 if spans else cursor
        found = text.find(stripped, search_from, end)
        if found < 0:  # pragma: no cover - the splitter only returns substrings
            raise AssertionError(f"splitter produced text not in the document: {stripped!r}")
        spans.append((found, found + len(stripped)))
        cursor = found
    return spans


def _merge_small(spans: list[tuple[int, int]], min_chars: int) -> list[tuple[int, int]]:
    """Fold degenerate pieces into a neighbour.

    A short first piece (a heading whose body did not fit beside it) joins the next
    piece; any later short piece (a trailing "。" or clause) joins the previous one.
    """
    merged: list[tuple[int, int]] = []
    carry: int | None = None
    for start, end in spans:
        if carry is not None:
            start, carry = min(carry, start), None
        if end - start >= min_chars:
            merged.append((start, end))
        elif merged:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            carry = start
    if carry is not None:  # the whole section is shorter than min_chars: keep it
        merged.append((carry, spans[-1][1]))
    return merged

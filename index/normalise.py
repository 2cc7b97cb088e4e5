"""Repair text-extraction damage without changing a word.

Only whitespace, line structure and known boilerplate (a scraper's watermark, a trailing
word-count note) are touched, so ``normalised`` with all whitespace removed equals the
source with whitespace and boilerplate removed. Offsets everywhere refer to this text.
"""

from __future__ import annotations

import re
from collections import Counter

from index.structure import is_heading_start

BOILERPLATE = (
    # A content-farm watermark repeated in PDF copies of government documents.
    re.compile(r"本文内容来自网络[，,]\s*由\s*EESIA.*?(?:处理[！!]|$)", re.MULTILINE),
    # An editor's length note such as （约7000字） on a line of its own.
    re.compile(r"^[ \t\u3000]*[（(]约\s*\d+\s*字[)）][ \t\u3000]*$", re.MULTILINE),
)
# Characters after which a line is a complete sentence or clause.
TERMINAL = set("。！？；：!?;:”’」』）)…")
_WS = r"[ \t\u3000\u00a0\u2002-\u200b\ufeff]"
# Whitespace between two ASCII words is real (English, numbers); elsewhere it is an
# extraction artefact between CJK characters, e.g. "科 技 部" or "2025 年".
_ASCII_WORD = re.compile(r"[A-Za-z0-9%&.,)\]]")
_ASCII_START = re.compile(r"[A-Za-z0-9(\[]")
# A wrapped line longer than this without terminal punctuation continues on the next line.
LONG_LINE = 40


def strip_boilerplate(text: str) -> str:
    """Remove watermark and editor notes (whole matches only)."""
    for pattern in BOILERPLATE:
        text = pattern.sub("", text)
    return text


def clean_line(line: str) -> str:
    """Drop whitespace inside a line except a single space between two ASCII words."""
    parts = re.split(f"{_WS}+", line.strip(" \t\u3000\u00a0\ufeff\r"))
    out = parts[0]
    for part in parts[1:]:
        if not part:
            continue
        if out and _ASCII_WORD.fullmatch(out[-1]) and _ASCII_START.match(part[0]):
            out += " "
        out += part
    return out


def _wrap_width(lines: list[str]) -> int | None:
    """The typeset line width of hard-wrapped (PDF) text, or None for one-line paragraphs.

    Lines that stop mid-sentence were cut by the typesetter, so their most common length
    (give or take the two characters justification adds or removes) is the page width.
    """
    cut = [len(line) for line in lines if line and line[-1] not in TERMINAL]
    lengths = Counter(cut)
    if not lengths:
        return None
    width = max(lengths, key=lambda w: (sum(lengths[w + d] for d in (-2, -1, 0)), w))
    count = sum(lengths[width + d] for d in (-2, -1, 0))
    return width if count >= 0.3 * len(cut) and 10 <= width < 80 else None


def _continues(line: str, following: str, width: int | None) -> bool:
    """Whether ``line`` was broken by the typesetter rather than ended by the author."""
    if is_heading_start(following):
        return False
    if width is not None and len(line) >= width - 2:
        # A full line ending a sentence, followed by a short unpunctuated line, is the end
        # of a paragraph before a signature or title block ("……请遵照执行。" / "科技部").
        ends_block = line[-1] in TERMINAL and len(following) < width // 2
        return not (ends_block and following[-1] not in TERMINAL)
    return len(line) >= LONG_LINE and line[-1] not in TERMINAL


def _join(left: str, right: str) -> str:
    if _ASCII_WORD.fullmatch(left[-1]) and _ASCII_START.match(right[0]):
        return f"{left} {right}"
    return left + right


def normalise(raw: str) -> str:
    """Return the canonical text of a document: one paragraph per line.

    Args:
        raw: extracted text, possibly hard-wrapped with blank lines and stray spaces.

    Returns:
        Paragraphs joined by single newlines, no leading/trailing whitespace.
    """
    text = strip_boilerplate(raw.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [clean_line(line) for line in text.split("\n")]
    lines = [line for line in lines if line]
    width = _wrap_width(lines)
    paragraphs: list[str] = []
    previous = ""
    for line in lines:
        if previous and _continues(previous, line, width):
            paragraphs[-1] = _join(paragraphs[-1], line)
        else:
            paragraphs.append(line)
        previous = line
    return "\n".join(paragraphs)


def find_ignoring_whitespace(text: str, needle: str) -> tuple[int, int] | None:
    """Where ``needle`` first occurs in ``text`` when whitespace is ignored in both (text
    extracted from a PDF breaks lines anywhere); its (start, end) in ``text``."""
    compact = [ch for ch in needle if not ch.isspace()]
    if not compact:
        return None
    match = re.search(r"\s*".join(map(re.escape, compact)), text)
    return match.span() if match else None

"""Heading hierarchy of Chinese policy documents, as character spans.

Chinese government documents number their parts ``一、``, sections ``（一）``, items
``1.`` and goal lines ``——``. Each paragraph that starts with such a marker opens a
section; a section runs until the next heading of the same or a higher level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CN_NUM = "一二三四五六七八九十百"
HEADING_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (1, re.compile(rf"^[{_CN_NUM}]+、")),
    (2, re.compile(rf"^[（(][{_CN_NUM}]+[)）]")),
    (3, re.compile(r"^\d{1,2}[.．、](?!\d)")),
    (4, re.compile(r"^——")),
)
MAX_TITLE_CHARS = 40
PATH_SEPARATOR = " › "


def heading_level(paragraph: str) -> int | None:
    """The heading level a paragraph opens (1 = part ... 4 = goal line), or None."""
    for level, pattern in HEADING_PATTERNS:
        if pattern.match(paragraph):
            return level
    return None


def is_heading_start(line: str) -> bool:
    """Whether a line starts a new heading (used to stop joining wrapped lines)."""
    return heading_level(line) is not None


def heading_title(paragraph: str) -> str:
    """The title of a heading: its first sentence, shortened for display."""
    title = re.split(r"(?<=[。！？；])", paragraph, maxsplit=1)[0].rstrip("。；")
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


@dataclass(frozen=True, slots=True)
class Section:
    """A span of the normalised text under one heading path.

    ``start`` is where its heading paragraph begins and ``end`` is exclusive.
    ``has_body`` is False for a bare heading line (e.g. ``三、主要任务``) directly followed
    by a sub-heading: such a heading is attached to the section after it, never indexed
    alone.
    """

    path: tuple[str, ...]
    start: int
    end: int
    has_body: bool

    @property
    def label(self) -> str:
        return PATH_SEPARATOR.join(self.path)


def split_sections(text: str) -> list[Section]:
    """Cut normalised text (one paragraph per line) into leaf sections.

    Returns:
        Consecutive sections covering the whole text, in order; front matter before
        the first heading gets an empty path.
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    start, body_start = 0, 0
    current_path: tuple[str, ...] = ()
    offset = 0
    for paragraph in text.split("\n"):
        level = heading_level(paragraph)
        if level is not None:
            if offset > start:
                sections.append(_section(text, current_path, start, body_start, offset))
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, heading_title(paragraph)))
            current_path = tuple(title for _, title in path)
            start = offset
            single_line_heading = len(paragraph) <= MAX_TITLE_CHARS
            body_start = offset + len(paragraph) if single_line_heading else offset
        offset += len(paragraph) + 1
    if len(text) > start:
        sections.append(_section(text, current_path, start, body_start, len(text)))
    return sections


def _section(text: str, path: tuple[str, ...], start: int, body_start: int, end: int) -> Section:
    has_body = bool(text[min(body_start, end) : end].strip())
    return Section(path=path, start=start, end=end, has_body=has_body)

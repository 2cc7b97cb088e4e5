"""Which language a question is in, and its Simplified-Chinese form.

Decided by script, not by a statistical detector: a question's characters say reliably
whether it is Chinese, English or both, and OpenCC tells Traditional from Simplified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True, slots=True)
class QueryLanguage:
    """The detected language of a question.

    ``language`` is the dominant one ("zh" or "en"); ``mixed`` is True when both scripts
    carry weight; ``traditional`` when the Chinese was written in Traditional characters.
    ``text`` is the question with Traditional converted to Simplified.
    """

    language: Literal["zh", "en"]
    mixed: bool
    traditional: bool
    text: str

    @property
    def detail(self) -> str:
        if self.mixed:
            return "mixed"
        return "zh-Hant" if self.traditional else self.language


@cache
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def detect_language(question: str) -> QueryLanguage:
    """Classify a question and convert Traditional Chinese to Simplified.

    Args:
        question: the raw question.

    Returns:
        The detected language; ``text`` is what retrieval should use.
    """
    cjk = len(_CJK.findall(question))
    latin_words = len(_LATIN_WORD.findall(question))
    # One Chinese character carries about as much as one English word.
    language: Literal["zh", "en"] = "zh" if cjk >= latin_words and cjk > 0 else "en"
    mixed = cjk > 0 and latin_words > 0 and min(cjk, latin_words) >= 2
    simplified = _t2s().convert(question) if cjk else question
    return QueryLanguage(
        language=language, mixed=mixed, traditional=simplified != question, text=simplified
    )

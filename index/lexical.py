"""BM25 over Chinese words and character bigrams, English words, and numbers.

Regex tokenizers treat a run of Chinese characters as one token and BM25 then finds
nothing. jieba's search mode gives words and their sub-words; character bigrams of
every Chinese run catch names jieba does not know (e.g. a new programme's name).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_YEAR = re.compile(r"(19|20)\d\d")
_WORD = re.compile(r"[a-z0-9][a-z0-9.&%-]*[a-z0-9%]|[a-z0-9]")
# Function words that carry no topic; questions are full of them ("有多少", "what is").
STOPWORDS = frozenset(
    "的 了 和 与 及 是 在 有 为 对 等 中 上 把 被 将 从 以 于 之 其 或 并 而 也 都 就 "
    "吗 呢 吧 啊 么 什么 哪些 哪个 多少 如何 怎么 怎样 为什么 是否 哪 几 请问 "
    "现在 目前 已经 一共 总共 哪家 哪几个 哪一年 哪里 几个 几年 多大 多久 怎么样 什么样 "
    "分别 这份 那些 这些 有没有 是不是 谁 大概 大约 "
    "a an the of to in on for and or is are was were be been by with as at from that "
    "this these those what which who whom how many much does do did has have had it its "
    "there their they about into than then will would can could should please tell me".split()
)


def _inside_sentence(text: str, word: str) -> bool:
    """False for a capitalised word that only starts the question ("What", "How")."""
    return any(text[: m.start()].strip() != "" for m in re.finditer(re.escape(word), text))


class Tokenizer:
    """Turns Chinese/English text into BM25 terms; one jieba dictionary per instance."""

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        import jieba  # heavy dictionary load; deferred until a tokenizer is made

        jieba.setLogLevel(logging.WARNING)  # its start-up chatter is not our log

        import jieba.posseg

        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        # The part-of-speech tagger reads the whole dictionary: build it once, here.
        self._pos = jieba.posseg.POSTokenizer(self._jieba)
        for word in user_words:
            self._jieba.add_word(word, freq=2000)

    def anchors(self, text: str) -> list[str]:
        """Names, years and Latin words in a question: what a passage must mention to answer.

        A question about 上海, 2030 or ByteDance cannot be answered by a corpus that never
        names them, however close its passages are in meaning.
        """
        found: list[str] = []
        for pair in self._pos.cut(text):
            word, flag = pair.word, pair.flag
            named = flag in ("ns", "nt", "nr", "nz") and len(word) > 1
            year = flag in ("m", "eng") and _YEAR.fullmatch(word) is not None
            # A capitalised Latin word inside a sentence is a name (Shanghai, ByteDance).
            latin_name = flag == "eng" and len(word) > 2 and word[:1].isupper()
            latin_name = latin_name and _inside_sentence(text, word)
            if (named or year or latin_name) and word.lower() not in found:
                found.append(word.lower())
        return found

    def tokenize(self, text: str) -> list[str]:
        """Terms for BM25: jieba search-mode words, CJK bigrams, lowercase ASCII words."""
        lowered = text.lower()
        # Single characters are noise as words; the bigrams below cover them in context.
        terms = [
            word
            for word in self._jieba.cut_for_search(lowered)
            if len(word) > 1 and _CJK_RUN.fullmatch(word)
        ]
        for run in _CJK_RUN.findall(lowered):
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
        terms.extend(w for w in _WORD.findall(lowered) if w not in STOPWORDS)
        return [term for term in terms if term not in STOPWORDS]


class LexicalIndex:
    """A BM25 index over pre-tokenised passages, addressed by row position."""

    def __init__(self, corpus_tokens: Sequence[list[str]]) -> None:
        import bm25s

        self._bm25 = bm25s.BM25()
        self.size = len(corpus_tokens)
        if self.size:
            self._bm25.index([list(t) or [""] for t in corpus_tokens], show_progress=False)

    def search(
        self, query_tokens: list[str], *, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (row, score) pairs with a positive score, best first.

        Args:
            query_tokens: terms from the same ``Tokenizer``.
            k: how many rows to return at most.
            allowed: optional boolean mask over rows (document filter).
        """
        if not self.size:
            return []
        ids = self._bm25.get_tokens_ids(query_tokens)
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(row), float(scores[row])) for row in top if scores[row] > 0]

    def knows(self, term: str) -> bool:
        """Whether the corpus contains ``term`` (a word, or all its character bigrams)."""
        vocabulary = self._bm25.vocab_dict if self.size else {}
        if term in vocabulary:
            return True
        runs = _CJK_RUN.findall(term)
        bigrams = [run[i : i + 2] for run in runs for i in range(len(run) - 1)]
        return bool(bigrams) and all(b in vocabulary for b in bigrams)

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, *, size: int, mmap: bool = False) -> LexicalIndex:
        import bm25s

        index = cls.__new__(cls)
        index._bm25 = bm25s.BM25.load(str(folder), mmap=mmap, show_progress=False)
        index.size = size
        return index

    @property
    def stats(self) -> dict[str, Any]:
        return {"passages": self.size, "vocabulary": len(getattr(self._bm25, "vocab_dict", {}))}

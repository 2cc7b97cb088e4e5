"""BM25 over Chinese words and character bigrams, English words, and numbers.

Regex tokenizers treat a run of Chinese characters as one token and BM25 then finds
nothing. jieba's search mode gives words and their sub-words; character bigrams of
every Chinese run catch names jieba does not know (e.g. a new programme's name).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.errors import IndexIntegrityError

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
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

    def tagged(self, text: str) -> list[tuple[str, str]]:
        """(word, part-of-speech flag) pairs from jieba's dictionary, which marks names (ns
        places, nt organisations, nz other names); "x" for a word it does not know. The
        dictionary alone, not the tagger's statistical model: a tenth of the time."""
        tags = self._pos.word_tag_tab
        return [(word, tags.get(word, "x")) for word in self._jieba.cut(text, HMM=False)]

    def words(self, text: str) -> list[str]:
        """A question's content words, once each: jieba search-mode words and lowercase
        ASCII words, without function words (no bigrams: they cross word boundaries)."""
        lowered = text.lower()
        found = [
            word
            for word in self._jieba.cut_for_search(lowered)
            if len(word) > 1 and _CJK_RUN.fullmatch(word)
        ]
        found += _WORD.findall(lowered)
        return list(dict.fromkeys(w for w in found if w not in STOPWORDS))

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
    """BM25 over pre-tokenised passages, addressed by position: a main segment plus a delta.

    The main segment holds Lucene BM25 (the variant bm25s computes by default, k1 1.5,
    b 0.75) as precomputed scores: one posting list per term, saved as numpy arrays and
    memory-mapped on load. Passages added later go to a small delta segment instead of a
    rebuild, so adding a document costs time proportional to the document; a full rebuild
    (``LexicalIndex`` over every passage) folds the delta in. Scores use collection-wide
    document frequencies (main + delta) and the main segment's average length: the same
    ranking as a full rebuild up to the drift of that average.
    """

    def __init__(self, corpus_tokens: Sequence[list[str]]) -> None:
        self.main_size = len(corpus_tokens)
        self._main = _Postings.build(corpus_tokens) if corpus_tokens else _Postings.empty()
        self._delta = _Delta()

    @property
    def size(self) -> int:
        return self.main_size + self._delta.size

    @property
    def delta_size(self) -> int:
        return self._delta.size

    def extended(self, corpus_tokens: Sequence[list[str]]) -> LexicalIndex:
        """A new index with these passages appended to the delta; this one is unchanged
        and shares its main segment with the new one (nothing large is copied)."""
        index = copy.copy(self)
        index._delta = self._delta.extended(corpus_tokens)
        return index

    def with_delta(self, corpus_tokens: Sequence[list[str]]) -> LexicalIndex:
        """A new index whose delta holds exactly these passages (the main segment shared):
        how passages are taken out of the delta."""
        index = copy.copy(self)
        index._delta = _Delta().extended(corpus_tokens)
        return index

    def search(
        self, query_tokens: list[str], *, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (position, score) pairs with a positive score, best first.

        Args:
            query_tokens: terms from the same ``Tokenizer``.
            k: how many positions to return at most.
            allowed: optional boolean mask over positions (document filter).
        """
        if not self.size or k <= 0:
            return []
        scores = np.zeros(self.size, dtype=np.float32)
        for term, count in Counter(query_tokens).items():
            main = self._main.postings(term)
            delta = self._delta.postings.get(term)
            main_df = 0 if main is None else len(main[0])
            df = main_df + (0 if delta is None else len(delta[0]))
            if df == 0:
                continue
            idf = bm25_idf(df, self.size)
            if main is not None:
                # The main segment stored idf(main) * tf-part; rescale to the collection's idf.
                positions, values = main
                scores[positions] += values * np.float32(
                    count * idf / bm25_idf(main_df, self.main_size)
                )
            if delta is not None:
                positions, tf = delta
                lengths = self._delta.lengths[positions]
                norm = K1 * (1 - B + B * lengths / self._main.mean_length)
                scores[self.main_size + positions] += (count * idf * tf / (tf + norm)).astype(
                    np.float32
                )
        if allowed is not None:
            scores[~allowed] = 0.0
        return top_positive(scores, k)

    def idf(self, term: str) -> float:
        """BM25's idf of ``term`` over every passage; a term no passage holds gets the
        largest weight there is, as the rarest term would."""
        main = self._main.postings(term)
        delta = self._delta.postings.get(term)
        df = (0 if main is None else len(main[0])) + (0 if delta is None else len(delta[0]))
        return bm25_idf(df, max(self.size, 1))

    def knows(self, term: str) -> bool:
        """Whether the corpus contains ``term`` (a word, or all its character bigrams)."""
        return knows_term(
            term, lambda word: word in self._main.vocabulary or word in self._delta.postings
        )

    def save(self, folder: Path, *, main: bool = True) -> None:
        """Write the index to ``folder``; ``main=False`` writes only what an added passage
        changes (``segments.json``), where the main segment's files are already in place."""
        folder.mkdir(parents=True, exist_ok=True)
        if main:
            self._main.save(folder)
        segments = {
            "main_size": self.main_size,
            "delta": [list(tokens) for tokens in self._delta.tokens],
        }
        (folder / SEGMENTS_FILE).write_text(json.dumps(segments, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, folder: Path, *, size: int, mmap: bool = False) -> LexicalIndex:
        """Load a saved index (its arrays memory-mapped with ``mmap``).

        Raises:
            IndexIntegrityError: the files are unreadable or do not add up to ``size``
                passages.
        """
        try:
            segments = json.loads((folder / SEGMENTS_FILE).read_text("utf-8"))
            main_size = int(segments["main_size"])
            delta = _Delta().extended(segments["delta"])
            main = _Postings.load(folder, mmap=mmap)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexIntegrityError(f"BM25 segments in {folder} are unreadable: {exc}") from exc
        if main_size + delta.size != size or main.size != main_size:
            raise IndexIntegrityError(
                f"BM25 index holds {main.size} + {delta.size} passages, expected {size}"
            )
        index = cls.__new__(cls)
        index.main_size, index._main, index._delta = main_size, main, delta
        return index

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "passages": self.size,
            "delta_passages": self.delta_size,
            "vocabulary": len(self._main.vocabulary),
        }


SEGMENTS_FILE = "segments.json"
_NO_POSITIONS = np.zeros(0, dtype=np.int64)
_NO_COUNTS = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class _Delta:
    """Passages added since the main segment was built: raw term frequencies per term."""

    tokens: tuple[tuple[str, ...], ...] = ()
    postings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def extended(self, corpus_tokens: Sequence[list[str]]) -> _Delta:
        """A new delta with these passages appended; touches only the terms they use."""
        added: dict[str, tuple[list[int], list[int]]] = {}
        for offset, tokens in enumerate(corpus_tokens, start=self.size):
            for term, tf in Counter(tokens).items():
                positions, tfs = added.setdefault(term, ([], []))
                positions.append(offset)
                tfs.append(tf)
        postings = dict(self.postings)
        for term, (positions, tfs) in added.items():
            old_positions, old_tfs = postings.get(term, (_NO_POSITIONS, _NO_COUNTS))
            postings[term] = (
                np.concatenate([old_positions, np.array(positions, dtype=np.int64)]),
                np.concatenate([old_tfs, np.array(tfs, dtype=np.float32)]),
            )
        new_lengths = np.array([len(t) or 1 for t in corpus_tokens], dtype=np.float32)
        return _Delta(
            tokens=self.tokens + tuple(tuple(t) for t in corpus_tokens),
            postings=postings,
            lengths=np.concatenate([self.lengths, new_lengths]),
        )


K1 = 1.5
B = 0.75
_ARRAYS = ("scores", "passages", "offsets")


@dataclass(frozen=True)
class _Postings:
    """The main segment: for each term (``vocabulary``: term -> id), the passages that
    contain it (``passages[offsets[id]:offsets[id + 1]]``, ascending) and their precomputed
    BM25 ``scores``."""

    scores: np.ndarray
    passages: np.ndarray
    offsets: np.ndarray
    vocabulary: dict[str, int]
    lengths: np.ndarray
    """Terms per passage (an empty passage counts as one)."""

    @classmethod
    def empty(cls) -> _Postings:
        none = np.zeros(0, dtype=np.float32)
        return cls(none, none.astype(np.int32), np.zeros(1, np.int64), {}, none)

    @property
    def size(self) -> int:
        return len(self.lengths)

    @functools.cached_property
    def mean_length(self) -> float:
        """Worked out once: the segment is immutable and queries read it per term."""
        return float(self.lengths.mean()) if len(self.lengths) else 1.0

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Passages containing ``term`` and their scores (None if it occurs nowhere)."""
        term_id = self.vocabulary.get(term)
        if term_id is None:
            return None
        start, end = int(self.offsets[term_id]), int(self.offsets[term_id + 1])
        return self.passages[start:end], self.scores[start:end]

    def save(self, folder: Path) -> None:
        for name in (*_ARRAYS, "lengths"):
            np.save(folder / f"{name}.npy", getattr(self, name))
        vocabulary = json.dumps(self.vocabulary, ensure_ascii=False)
        (folder / "vocabulary.json").write_text(vocabulary, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, *, mmap: bool) -> _Postings:
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None)
            for name in (*_ARRAYS, "lengths")
        }
        vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        return cls(vocabulary=vocabulary, **arrays)

    @classmethod
    def build(cls, corpus_tokens: Iterable[list[str]], *, block: int = 50_000) -> _Postings:
        """Lucene BM25 scores of every (term, passage), built with numpy.

        Each block of passages becomes (passage, term id, tf) triples through one
        ``np.unique``: the peak memory is those triples and one sort, where a build over
        Python lists of every passage's terms peaks at 12 GB at a million passages.
        """
        term_ids: dict[str, int] = {}
        lengths: list[int] = []
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        ids: list[int] = []
        counts: list[int] = []

        def flush() -> None:
            local = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            keys, tf = np.unique((local << 32) | np.array(ids, dtype=np.int64), return_counts=True)
            passages = (keys >> 32).astype(np.int32) + len(lengths)
            blocks.append((passages, keys.astype(np.int32), tf.astype(np.float32)))
            lengths.extend(counts)
            ids.clear()
            counts.clear()

        for terms in corpus_tokens:
            terms = terms or [""]  # an empty passage still counts, with one empty term
            counts.append(len(terms))
            ids.extend(term_ids.setdefault(term, len(term_ids)) for term in terms)
            if len(counts) == block:
                flush()
        if counts:
            flush()
        passages = np.concatenate([part[0] for part in blocks])
        terms_ = np.concatenate([part[1] for part in blocks])
        scores = np.concatenate([part[2] for part in blocks])  # tf, scored in place below
        blocks.clear()
        length = np.asarray(lengths, dtype=np.float32)
        df = np.bincount(terms_, minlength=len(term_ids))
        idf = np.log1p((len(length) - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = length[passages]
        norm *= np.float32(K1 * B / length.mean())
        norm += np.float32(K1 * (1 - B))
        norm += scores
        np.divide(scores, norm, out=scores)
        del norm
        scores *= idf[terms_]
        order = np.argsort(terms_, kind="stable")
        del terms_
        passages = passages[order]
        scores = scores[order]
        del order
        offsets = np.zeros(len(term_ids) + 1, dtype=np.int64)
        np.cumsum(df, out=offsets[1:])
        return cls(scores, passages, offsets, term_ids, length)


def bm25_idf(df: int, n: int) -> float:
    """Lucene's BM25 idf, the variant bm25s computes by default."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def knows_term(term: str, known: Callable[[str], bool]) -> bool:
    """Whether a corpus whose terms ``known`` recognises contains ``term``: the term itself,
    or every character bigram of it (a name jieba does not split the same way)."""
    if known(term):
        return True
    runs = _CJK_RUN.findall(term)
    bigrams = [run[i : i + 2] for run in runs for i in range(len(run) - 1)]
    return bool(bigrams) and all(known(b) for b in bigrams)


def passage_term_weights(tokens: list[str], mean_length: float) -> dict[str, float]:
    """A passage's BM25 weight per term before idf, tf / (tf + k1 (1 - b + b len / mean)):
    what the main segment stores times idf. A query's score is the sum, over its terms, of
    count x idf x this weight."""
    terms = tokens or [""]  # an empty passage still counts, with one empty term
    norm = K1 * (1 - B + B * len(terms) / mean_length)
    return {term: tf / (tf + norm) for term, tf in Counter(terms).items()}


# Below this many rows a plain partial sort is as fast as sampling.
SAMPLED_TOPK_MIN_ROWS = 200_000


def top_positive(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best positive scores, best first; ties keep position order.

    At a million rows ``argpartition`` over every score dominates a BM25 query. The k-th
    best of an evenly spaced sample bounds the k-th best overall from below, so only rows
    at or above it need sorting: the same answer, a fraction of the work.
    """
    k = min(k, len(scores))
    candidates: np.ndarray | None = None
    step = len(scores) // (64 * k)
    if len(scores) >= SAMPLED_TOPK_MIN_ROWS and step > 1:
        sample = scores[::step]
        bound = float(np.partition(sample, len(sample) - k)[len(sample) - k])
        if bound > 0:
            candidates = np.flatnonzero(scores >= bound)
    if candidates is None:
        candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    top = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [(int(position), float(scores[position])) for position in top]

"""The BM25 delta segment: ranks like a full rebuild, persists, and never alters its base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval.gold import load_gold
from index.errors import IndexIntegrityError
from index.lexical import LexicalIndex, top_positive
from index.pipeline import Components
from index.snapshot import Snapshot


@pytest.fixture(scope="module")
def passages(snapshot: Snapshot) -> list[list[str]]:
    return [snapshot.tokens[int(row)] for row in snapshot.lexical_rows]


@pytest.fixture(scope="module")
def questions(components: Components) -> list[list[str]]:
    tokenize = components.tokenizer.tokenize
    return [tokenize(item.question) for item in load_gold() if item.lang == "zh"]


def _split(passages: list[list[str]], main_share: float) -> LexicalIndex:
    cut = int(len(passages) * main_share)
    return LexicalIndex(passages[:cut]).extended(passages[cut:])


def test_delta_ranks_like_a_full_rebuild(
    passages: list[list[str]], questions: list[list[str]]
) -> None:
    full = LexicalIndex(passages)
    segmented = _split(passages, 0.8)
    assert segmented.size == full.size and segmented.delta_size > 0
    for terms in questions:
        expected = full.search(terms, k=5)
        got = segmented.search(terms, k=5)
        # Only the average passage length differs (main segment's, not the whole corpus's):
        # every score within 5%, and the order the same but for passages that close.
        scores = dict(full.search(terms, k=full.size))
        for row, score in got:
            assert score == pytest.approx(scores[row], rel=0.05)
        for (row, score), (other, other_score) in zip(got[:3], expected[:3], strict=False):
            assert row == other or score == pytest.approx(other_score, rel=0.05)


def test_an_empty_delta_scores_exactly_like_bm25s(
    passages: list[list[str]], questions: list[list[str]]
) -> None:
    """bm25s's default Lucene BM25, which counts an empty passage as one empty term."""
    import bm25s

    passages = [*passages[:20], [], *passages[20:]]
    reference = bm25s.BM25()
    reference.index([list(t) or [""] for t in passages], show_progress=False)
    ours = LexicalIndex(passages)
    for terms in questions[:10]:
        ids = reference.get_tokens_ids(terms)
        expected = reference.get_scores_from_ids(ids) if ids else np.zeros(len(passages))
        top = ours.search(terms, k=len(passages))
        assert all(score == pytest.approx(float(expected[row]), rel=1e-5) for row, score in top)


def test_extending_leaves_the_original_untouched(passages: list[list[str]]) -> None:
    base = LexicalIndex(passages)
    before = base.search(["独角兽"], k=5)
    extended = base.extended([["墨子", "独角兽", "独角兽"]])
    assert base.size == len(passages) and base.delta_size == 0
    assert base.search(["独角兽"], k=5) == before
    [(position, _)] = extended.search(["墨子"], k=5)
    assert position == len(passages) and extended.size == len(passages) + 1
    assert extended.knows("墨子") and not base.knows("墨子")


@pytest.mark.parametrize("mmap", [False, True])
def test_segments_round_trip(
    tmp_path: Path, passages: list[list[str]], questions: list[list[str]], mmap: bool
) -> None:
    index = _split(passages, 0.9)
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", size=index.size, mmap=mmap)
    assert loaded.delta_size == index.delta_size
    for terms in questions[:10]:
        assert loaded.search(terms, k=10) == index.search(terms, k=10)


def test_damaged_segments_are_refused(tmp_path: Path, passages: list[list[str]]) -> None:
    _split(passages, 0.9).save(tmp_path / "bm25")
    with pytest.raises(IndexIntegrityError, match="expected"):
        LexicalIndex.load(tmp_path / "bm25", size=len(passages) + 1)
    (tmp_path / "bm25" / "segments.json").write_text("{", encoding="utf-8")
    with pytest.raises(IndexIntegrityError, match="unreadable"):
        LexicalIndex.load(tmp_path / "bm25", size=len(passages))


@pytest.mark.parametrize("k", [1, 10, 50])
def test_sampled_top_k_is_exact(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = np.where(rng.random(400_000) < 0.3, rng.random(400_000), 0).astype(np.float32)
    expected = np.argsort(-scores, kind="stable")[:k]
    assert [row for row, _ in top_positive(scores, k)] == expected.tolist()

"""Retriever on the real model and index, over both stores, and the fusion rule by hand."""

from __future__ import annotations

import pytest

from index.chunking import sentence_spans
from index.errors import InvalidInputError
from index.retriever import Retriever, weighted_rrf


@pytest.mark.parametrize(
    "question",
    [
        "北京独角兽企业有多少家？",
        "北京獨角獸企業有多少家？",
        "How many unicorn companies does Beijing have?",
    ],
)
def test_unicorn_count_is_in_the_top_three(any_retriever: Retriever, question: str) -> None:
    result = any_retriever.search(question, top_k=3)
    assert any("北京独角兽企业数量115家" in hit.text for hit in result.hits)


def test_hits_carry_citations(any_retriever: Retriever) -> None:
    [hit] = any_retriever.search("技术合同成交额", top_k=1).hits
    document = any_retriever.snapshot.documents[hit.doc_id]
    assert document.text[hit.start : hit.end] == hit.text
    assert hit.title == document.meta.title and hit.chunk_id.startswith(hit.doc_id)
    assert hit.best_sentence is not None
    start, end = hit.best_sentence
    assert hit.start <= start < end <= hit.end
    # One cosine per sentence; the best sentence's is the passage's dense score.
    assert len(hit.sentence_scores) == len(sentence_spans(hit.text))
    assert max(s for s in hit.sentence_scores if s is not None) == hit.dense_score


def test_english_is_expanded_and_mixed_detected(any_retriever: Retriever) -> None:
    result = any_retriever.search("What is the technology contract turnover target?", top_k=3)
    assert "技术合同成交额" in result.expansions
    assert any_retriever.search("中关村的 unicorn companies 有多少", top_k=1).language.mixed


def test_chinese_everyday_wording_finds_the_documents_term(any_retriever: Retriever) -> None:
    result = any_retriever.search("这几年北京技术交易的规模涨了多少？", top_k=5)
    assert result.expansions == ["技术合同成交额"]
    assert any("6316.2亿元提高到9865亿元" in hit.text for hit in result.hits)


def test_document_filter(any_retriever: Retriever) -> None:
    hits = any_retriever.search("独角兽", top_k=10, doc_ids=["most-plan-2023-41"]).hits
    assert hits and {h.doc_id for h in hits} == {"most-plan-2023-41"}
    with pytest.raises(InvalidInputError, match="unknown document"):
        any_retriever.search("独角兽", doc_ids=["nope"])
    with pytest.raises(InvalidInputError, match="mode"):
        any_retriever.search("独角兽", mode="magic")  # type: ignore[arg-type]


def test_weighted_rrf_by_hand() -> None:
    # k = 1, weights dense 1, lexical 2:
    #   a: 1/(1+1) + 2/(1+2) = 0.5 + 0.667 = 1.1667; b: 1/(1+2) + 2/(1+1) = 1.3333;
    #   c: 1/(1+3) = 0.25. Best possible = (1 + 2)/(1+1) = 1.5.
    fused = weighted_rrf([(1.0, [10, 20, 30]), (2.0, [20, 10])], k=1)
    assert [row for row, _ in fused] == [20, 10, 30]
    assert [round(score, 4) for _, score in fused] == [0.8889, 0.7778, 0.1667]

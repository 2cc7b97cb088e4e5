"""Glossary, language detection and the BM25 tokenizer."""

from __future__ import annotations

import re

import pytest

from index.documents import Document
from index.glossary import Glossary
from index.language import detect_language
from index.lexical import LexicalIndex, Tokenizer
from index.pipeline import Components
from index.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def glossary() -> Glossary:
    return Glossary.load(PROJECT_ROOT / "corpus" / "glossary.tsv")


def test_glossary_is_large_and_every_term_occurs(
    glossary: Glossary, documents: dict[str, Document]
) -> None:
    corpus = re.sub(r"\s+", "", "".join(d.text for d in documents.values()))
    assert len(glossary.entries) >= 200
    missing = [e.zh for e in glossary.entries if re.sub(r"\s+", "", e.zh) not in corpus]
    assert missing == []
    assert len({e.zh for e in glossary.entries}) == len(glossary.entries)


@pytest.mark.parametrize(
    ("question", "term"),
    [
        ("How many unicorn companies does Beijing have?", "独角兽"),
        ("What was the technology contract turnover in 2024?", "技术合同成交额"),
        ("Tell me about Zhongguancun's reforms", "中关村"),
        ("How many foreign-invested R&D centres are there?", "外资研发中心"),
    ],
)
def test_glossary_expands_english(glossary: Glossary, question: str, term: str) -> None:
    assert term in glossary.expand(question)


def test_chinese_everyday_wording_maps_to_the_documents_terms(glossary: Glossary) -> None:
    assert glossary.expand("这几年北京技术交易的规模涨了多少？") == ["技术合同成交额"]
    assert "可重复使用火箭" in glossary.expand("北京在可回收火箭上有什么进展？")
    # A question already using the documents' term gains nothing.
    assert glossary.expand("技术合同成交额是多少？") == []


def test_every_alias_is_new_wording(glossary: Glossary) -> None:
    """An alias equal to its own term, or shared by two terms, would only add noise."""
    seen: dict[str, str] = {}
    for entry in glossary.entries:
        for alias in entry.zh_aliases:
            assert alias != entry.zh
            assert seen.setdefault(alias, entry.zh) == entry.zh, alias


def test_acronyms_match_case_sensitively(glossary: Glossary) -> None:
    assert "科技部" in glossary.expand("What did MOST decide?")
    assert "科技部" not in glossary.expand("What is the most important goal?")


@pytest.mark.parametrize(
    ("question", "language", "detail", "text"),
    [
        ("北京独角兽企业有多少家？", "zh", "zh", "北京独角兽企业有多少家？"),
        ("北京獨角獸企業有多少家？", "zh", "zh-Hant", "北京独角兽企业有多少家？"),
        ("How many unicorns are in Beijing?", "en", "en", "How many unicorns are in Beijing?"),
        (
            "中关村的 R&D intensity target 是多少",
            "zh",
            "mixed",
            "中关村的 R&D intensity target 是多少",
        ),
        ("2025?", "en", "en", "2025?"),
    ],
)
def test_language_detection(question: str, language: str, detail: str, text: str) -> None:
    detected = detect_language(question)
    assert (detected.language, detected.detail, detected.text) == (language, detail, text)


def test_tokenizer_words_bigrams_and_stopwords(components: Components) -> None:
    tokens = components.tokenizer.tokenize("北京独角兽企业有多少家？R&D intensity of 6%")
    assert {"独角兽", "企业", "独角", "角兽", "r&d", "intensity", "6%"} <= set(tokens)
    assert "多少" not in tokens and "of" not in tokens


def test_bm25_finds_chinese_and_out_of_vocabulary_names() -> None:
    tokenizer = Tokenizer()
    passages = [
        "北京独角兽企业数量115家。",
        "上线科技成果转化智能服务平台（转果果）。",
        "天气很好。",
    ]
    index = LexicalIndex([tokenizer.tokenize(p) for p in passages])
    assert index.search(tokenizer.tokenize("独角兽有多少"), k=3)[0][0] == 0
    # 转果果 is not a jieba word: its character bigrams still match.
    assert index.search(tokenizer.tokenize("转果果是什么"), k=3)[0][0] == 1
    assert index.search(tokenizer.tokenize("完全无关"), k=3) == []
    assert index.knows("转果果") and not index.knows("上海")

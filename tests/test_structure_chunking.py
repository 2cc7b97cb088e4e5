"""Heading paths and chunks: exact offsets, no straddling, no degenerate pieces."""

from __future__ import annotations

import pytest

from index.chunking import Chunk, chunk_document, sentence_spans
from index.documents import Document, DocumentMeta
from index.structure import heading_level, heading_title, split_sections

PARAMS = {"chunk_size": 400, "chunk_overlap": 80, "min_chars": 40}


@pytest.fixture(scope="module")
def chunks(documents: dict[str, Document]) -> list[Chunk]:
    return [c for doc in documents.values() for c in chunk_document(doc, **PARAMS)]


@pytest.mark.parametrize(
    ("paragraph", "level"),
    [
        ("一、总体思路", 1),
        ("十二、附则", 1),
        ("（三）加快建设世界领先科技园区，打造高质量发展的战略支撑。", 2),
        ("12.形成拥有技术主导权的产业集群。推动……", 3),
        ("——世界主要科学中心建设取得重要成效。以国家实验室为引领", 4),
        ("1.4倍的增长", None),
        ("2024年，每万人口高价值发明专利拥有量159.8件", None),
    ],
)
def test_heading_levels(paragraph: str, level: int | None) -> None:
    assert heading_level(paragraph) == level


def test_heading_title_is_first_sentence() -> None:
    assert (
        heading_title("1.形成国家实验室体系。坚持党对国家实验室的统一领导")
        == "1.形成国家实验室体系"
    )


def test_section_paths_nest(documents: dict[str, Document]) -> None:
    labels = [s.label for s in split_sections(documents["most-plan-2023-41"].text)]
    assert (
        "三、主要任务 › （一）建强建优战略科技力量，有效服务国家重大战略需求 › "
        "2.加快建成世界级重大科技基础设施集群"
    ) in labels
    assert "四、保障措施 › （三）强化经费保障" in labels
    assert "二、发展目标 › ——世界主要科学中心建设取得重要成效" in labels


def test_every_chunk_is_an_exact_slice(chunks: list[Chunk], documents: dict[str, Document]) -> None:
    for chunk in chunks:
        assert documents[chunk.doc_id].text[chunk.start : chunk.end] == chunk.text


def test_chunks_stay_inside_one_section(
    documents: dict[str, Document], chunks: list[Chunk]
) -> None:
    for doc_id, document in documents.items():
        sections = split_sections(document.text)
        for chunk in (c for c in chunks if c.doc_id == doc_id):
            home = [s for s in sections if s.path == chunk.section]
            # A chunk may begin with bare parent headings, but ends inside its own section.
            assert any(s.start <= chunk.end <= s.end for s in home), chunk.chunk_id


def test_bare_headings_are_glued_to_their_body(chunks: list[Chunk]) -> None:
    first_task = next(c for c in chunks if c.text.startswith("三、主要任务"))
    assert "1.形成国家实验室体系。" in first_task.text
    assert first_task.section[-1] == "1.形成国家实验室体系"


def test_no_degenerate_chunks(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert len(chunk.text) >= PARAMS["min_chars"], chunk
        assert len(chunk.text) <= PARAMS["chunk_size"] * 1.5, chunk.chunk_id
        assert chunk.text.strip() == chunk.text


def test_chunks_end_at_sentence_boundaries(chunks: list[Chunk]) -> None:
    endings = [c.text[-1] for c in chunks]
    share = sum(e in "。；！？”" for e in endings) / len(endings)
    assert share > 0.9


def test_overlap_and_ids(chunks: list[Chunk]) -> None:
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    first = [c for c in chunks if c.doc_id == "most-plan-2023-41"]
    assert [c.ordinal for c in first] == list(range(len(first)))


def test_tiny_document_is_one_chunk() -> None:
    meta = DocumentMeta(id="tiny", title_zh="小", title_en="Tiny", source="x.txt")
    [only] = chunk_document(
        Document(meta=meta, text="一、总则\n本办法自发布之日起施行。"), **PARAMS
    )
    assert only.text == "一、总则\n本办法自发布之日起施行。"


def test_sentence_spans_merge_fragments() -> None:
    text = "1.形成国家实验室体系。坚持统一领导，创新。\n推动在京实验室运行。ok"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "1.形成国家实验室体系。",
        "坚持统一领导，创新。",
        "推动在京实验室运行。ok",
    ]

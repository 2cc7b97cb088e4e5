"""A two-document corpus small enough to index in a second, for tests that break things."""

from __future__ import annotations

from pathlib import Path

from index.documents import DocumentMeta, save_catalog

TINY_DOCS = {
    "tiny-zh": (
        "一、总体要求\n为加快建设国际科技创新中心，制定本方案。到2025年，研发经费投入强度"
        "保持在6%左右，技术合同成交额达到8500亿元。\n二、主要任务\n（一）支持新型研发机构"
        "建设，布局建设一批重大科技基础设施，推动科技成果转化和产业化。\n",
        "zh",
    ),
    "tiny-en": (
        "1. Goals\nBeijing aims to become an international innovation centre. By 2025 the "
        "R&D intensity stays near 6 percent of GDP.\n2. Measures\nThe plan supports new "
        "research institutes, large science facilities and the transfer of technology.\n",
        "en",
    ),
}


def write_tiny_corpus(folder: Path) -> None:
    """Write the documents and their catalog under ``folder`` (a corpus directory)."""
    (folder / "documents").mkdir(parents=True, exist_ok=True)
    entries = []
    for doc_id, (text, language) in TINY_DOCS.items():
        (folder / "documents" / f"{doc_id}.txt").write_text(text, encoding="utf-8")
        entries.append(
            DocumentMeta(
                id=doc_id,
                title_zh=f"小文件{doc_id}",
                title_en=f"Tiny {doc_id}",
                source=f"documents/{doc_id}.txt",
                language=language,
            )
        )
    save_catalog(folder / "catalog.json", entries)

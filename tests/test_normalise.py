"""Normalisation repairs extraction damage and never changes a word."""

from __future__ import annotations

import re

import pytest

from index.documents import Document
from index.normalise import clean_line, normalise, strip_boilerplate
from index.settings import PROJECT_ROOT

SOURCES = {
    "bjsti-review-14fyp": PROJECT_ROOT / "corpus/documents/000_4aa0a39491af4968.txt",
    "most-plan-2023-41": PROJECT_ROOT / "corpus/documents/002_bf4136e02c4c7ad4.txt",
}
WATERMARK = re.compile(
    r"本文内容来自网络，由EESIA搜集整理，如有任何异议请联系我们，我们将酌情处理！"
)
LENGTH_NOTE = "（约7000字）"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("doc_id", sorted(SOURCES))
def test_only_whitespace_and_boilerplate_change(
    doc_id: str, documents: dict[str, Document]
) -> None:
    raw = SOURCES[doc_id].read_text(encoding="utf-8")
    expected = _squash(WATERMARK.sub("", raw).replace(LENGTH_NOTE, ""))
    assert _squash(documents[doc_id].text) == expected


def test_pdf_damage_is_repaired(documents: dict[str, Document]) -> None:
    text = documents["most-plan-2023-41"].text
    assert "EESIA" not in text
    assert "\n\n" not in text
    assert "科 技 部" not in text and "\n科技部\n" in text  # spaced signature line, kept as a line
    assert "2023年5月8日" in text and "41号" in text  # stray spaces around numbers removed
    # A sentence broken over three PDF lines is one paragraph again.
    assert (
        "落实习近平总书记关于北京国际科技创新中心建设的重要批示精神，科技部、北京市人民政府" in text
    )
    assert "请遵照执行。\n科技部" in text  # the paragraph ends before the signature block


def test_clean_document_keeps_paragraphs_and_joins_broken_sentence(
    documents: dict[str, Document],
) -> None:
    text = documents["bjsti-review-14fyp"].text
    assert "（约7000字）" not in text
    assert "论坛升级为面向全球科技创新交流合作的国家级平台" in text
    assert text.startswith("聚力打造世界主要科学中心和创新高地\n彰显科技强国首都担当\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("科 技 部", "科技部"),
        ("到 2025 年，R&D 经费", "到2025年，R&D经费"),
        ("AI for Science 平台", "AI for Science平台"),
        ("\u3000\u3000（一）强化政策保障。 ", "（一）强化政策保障。"),
    ],
)
def test_clean_line(line: str, expected: str) -> None:
    assert clean_line(line) == expected


def test_boilerplate_only_removes_whole_matches() -> None:
    assert strip_boilerplate("正文（约7000字）正文") == "正文（约7000字）正文"
    assert strip_boilerplate("正文\n（约7000字）   \n") == "正文\n\n"


def test_hard_wrapped_text_is_rejoined() -> None:
    wrapped = "\n\n".join(
        [
            "为深入学习贯彻党的二十大精神，落实习近平总书记关于北京国际",
            "科技创新中心建设的重要批示精神，科技部、北京市人民政府、国家发",
            "展改革委共同制定了本方案。",
            "一、总体思路",
            "围绕到 2025 年基本形成北京国际科技创新中心的战略目标，发挥",
            "首都教育、科技、人才优势。",
        ]
        * 3
    )
    paragraphs = normalise(wrapped).split("\n")
    assert paragraphs[0].endswith("共同制定了本方案。")
    assert paragraphs[1] == "一、总体思路"
    assert (
        paragraphs[2]
        == "围绕到2025年基本形成北京国际科技创新中心的战略目标，发挥首都教育、科技、人才优势。"
    )

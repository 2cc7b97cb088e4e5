"""Catalog and source loading: every supported format, hostile files refused cleanly."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from index.documents import (
    DocumentMeta,
    extract_text,
    load_catalog,
    load_document,
    save_catalog,
    validate_doc_id,
)
from index.errors import CorpusError, InvalidInputError, UnsupportedMediaError


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica (ASCII), offsets computed by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def minimal_docx(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_txt_md_pdf_docx_load() -> None:
    assert extract_text("北京\n科技".encode(), ".txt") == "北京\n科技"
    assert extract_text("\ufeff# 标题".encode(), ".md") == "# 标题"
    assert "Zhongguancun Forum 2025" in extract_text(minimal_pdf("Zhongguancun Forum 2025"), ".pdf")
    assert (
        extract_text(minimal_docx(["一、总体思路", "到2025年。"]), ".docx")
        == "一、总体思路\n到2025年。"
    )


@pytest.mark.parametrize(
    ("data", "suffix", "error"),
    [
        (b"x", ".exe", UnsupportedMediaError),
        (b"\xff\xfe\x00bad", ".txt", InvalidInputError),
        (b"   \n ", ".txt", InvalidInputError),
        (b"%PDF-1.4 garbage", ".pdf", InvalidInputError),
        (b"PK not a zip", ".docx", InvalidInputError),
        (b"nul\x00inside", ".txt", InvalidInputError),
    ],
)
def test_bad_files_are_refused(data: bytes, suffix: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        extract_text(data, suffix)


def test_zip_bomb_docx_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (210 * 1024 * 1024))
    with pytest.raises(InvalidInputError, match="expands"):
        extract_text(buffer.getvalue(), ".docx")


@pytest.mark.parametrize("doc_id", ["../etc", "A", "", "a/b", "x" * 65, "-lead", "中文"])
def test_bad_document_ids(doc_id: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_doc_id(doc_id)


def test_catalog_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    entries = [DocumentMeta(id="a-1", title_zh="甲", title_en="A", source="documents/a.txt")]
    save_catalog(path, entries)
    assert load_catalog(path) == entries
    path.write_text(json.dumps({"documents": [entries[0].to_dict()] * 2}), encoding="utf-8")
    with pytest.raises(CorpusError, match="duplicate"):
        load_catalog(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CorpusError, match="malformed"):
        load_catalog(path)
    with pytest.raises(CorpusError, match="not found"):
        load_catalog(tmp_path / "missing.json")


def test_source_must_exist_and_stay_inside_the_corpus(tmp_path: Path) -> None:
    outside = DocumentMeta(id="x", title_zh="x", title_en="x", source="../secret.txt")
    with pytest.raises(CorpusError, match="outside"):
        load_document(outside, tmp_path)
    missing = DocumentMeta(id="y", title_zh="y", title_en="y", source="documents/none.txt")
    with pytest.raises(CorpusError, match="cannot read"):
        load_document(missing, tmp_path)

"""The corpus as a catalog: document metadata plus source files in several formats.

Adding a document means adding a source file and a catalog entry; nothing else in the
code knows which documents exist.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from index.errors import CorpusError, InvalidInputError, UnsupportedMediaError
from index.files import write_atomically
from index.normalise import normalise

DOC_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SUPPORTED_SUFFIXES = (".txt", ".md", ".pdf", ".docx")
# A .docx is a zip; refuse archives that inflate absurdly (zip bombs) before parsing.
MAX_DOCX_INFLATED_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """One catalog entry."""

    id: str
    title_zh: str
    title_en: str
    source: str
    issuer: str = ""
    date: str | None = None
    number: str | None = None
    language: str = "zh"

    @property
    def title(self) -> str:
        """The title in the document's own language."""
        return self.title_zh if self.language.startswith("zh") else self.title_en

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Document:
    """A document with its normalised text: the text every offset refers to."""

    meta: DocumentMeta
    text: str

    @property
    def id(self) -> str:
        return self.meta.id


def validate_doc_id(doc_id: str) -> str:
    """Refuse ids that could escape a folder or break a URL."""
    if not DOC_ID_PATTERN.fullmatch(doc_id):
        raise InvalidInputError(
            f"invalid document id {doc_id!r}: use 1-64 lowercase letters, digits and '-'"
        )
    return doc_id


def load_catalog(path: Path) -> list[DocumentMeta]:
    """Read and validate the catalog file.

    Raises:
        CorpusError: the file is missing, not JSON, or has bad or duplicate entries.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = [DocumentMeta(**entry) for entry in raw["documents"]]
    except FileNotFoundError as exc:
        raise CorpusError(f"catalog not found: {path}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"catalog {path} is malformed: {exc}") from exc
    seen: set[str] = set()
    for entry in entries:
        try:
            validate_doc_id(entry.id)
        except InvalidInputError as exc:
            raise CorpusError(str(exc)) from exc
        if entry.id in seen:
            raise CorpusError(f"duplicate document id in catalog: {entry.id}")
        seen.add(entry.id)
    return entries


def save_catalog(path: Path, entries: list[DocumentMeta]) -> None:
    """Write the catalog atomically (temp file + rename), so a crash never truncates it."""
    write_atomically(path, catalog_bytes(entries))


def catalog_bytes(entries: list[DocumentMeta]) -> bytes:
    """The catalog file's content."""
    payload = json.dumps(
        {"documents": [e.to_dict() for e in entries]}, ensure_ascii=False, indent=2
    )
    return (payload + "\n").encode("utf-8")


def extract_text(data: bytes, suffix: str) -> str:
    """Extract plain text from a source file's bytes.

    Args:
        data: the file content.
        suffix: the file extension, e.g. ``.pdf``.

    Returns:
        The raw (not yet normalised) text.

    Raises:
        UnsupportedMediaError: unknown format.
        InvalidInputError: the file cannot be parsed or holds no text.
    """
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedMediaError(
            f"unsupported file type {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        if suffix in (".txt", ".md"):
            text = data.decode("utf-8-sig")
        elif suffix == ".pdf":
            text = _pdf_text(data)
        else:
            text = _docx_text(data)
    except UnicodeDecodeError as exc:
        raise InvalidInputError("text files must be UTF-8") from exc
    except (InvalidInputError, UnsupportedMediaError):
        raise
    except Exception as exc:  # parsers raise many unrelated types on hostile files
        raise InvalidInputError(f"cannot parse {suffix} file: {type(exc).__name__}") from exc
    if "\x00" in text:
        raise InvalidInputError("text contains NUL characters")
    if not text.strip():
        raise InvalidInputError("the file contains no text")
    return text


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader  # imported lazily: only uploads of PDFs pay for it

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def _docx_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        inflated = sum(info.file_size for info in archive.infolist())
        if inflated > MAX_DOCX_INFLATED_BYTES:
            raise InvalidInputError("the .docx expands to more than 200 MB; refused")
    import docx  # lazily, as above

    document = docx.Document(io.BytesIO(data))
    return "\n".join(paragraph.text for paragraph in document.paragraphs)


def load_document(meta: DocumentMeta, corpus_dir: Path) -> Document:
    """Read one catalog entry's source and normalise it.

    Raises:
        CorpusError: the source file is missing, outside the corpus, or unreadable.
    """
    path = (corpus_dir / meta.source).resolve()
    if not path.is_relative_to(corpus_dir.resolve()):
        raise CorpusError(f"source of {meta.id} lies outside the corpus folder")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read source of {meta.id}: {meta.source} ({exc})") from exc
    try:
        return parse_document(meta, data)
    except (InvalidInputError, UnsupportedMediaError) as exc:
        raise CorpusError(f"{meta.id}: {exc}") from exc


def parse_document(meta: DocumentMeta, data: bytes) -> Document:
    """The document whose source (named by ``meta.source``) holds ``data``.

    Raises:
        InvalidInputError / UnsupportedMediaError: the bytes cannot be read as text.
    """
    return Document(meta=meta, text=normalise(extract_text(data, Path(meta.source).suffix)))


def load_corpus(corpus_dir: Path) -> list[Document]:
    """Load every document named in ``corpus_dir/catalog.json``."""
    return [load_document(meta, corpus_dir) for meta in load_catalog(corpus_dir / "catalog.json")]

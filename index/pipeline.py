"""Wire the stages together: corpus -> (build if stale) -> snapshot -> retriever.

The CLI, the service and the evaluation all open a retriever through here, so they
search exactly the same index the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from index.answer import Answerer
from index.build import build_snapshot, check_compatible, is_up_to_date
from index.documents import load_corpus
from index.embedding import Embedder
from index.errors import IndexFormatError
from index.glossary import Glossary
from index.lexical import Tokenizer
from index.retriever import Retriever
from index.settings import Settings
from index.snapshot import Snapshot
from index.store import IndexStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Components:
    """The loaded, reusable parts behind a retriever."""

    settings: Settings
    embedder: Embedder
    tokenizer: Tokenizer
    glossary: Glossary
    store: IndexStore


def load_components(settings: Settings, *, embedder: Embedder | None = None) -> Components:
    """Load model, tokenizer and glossary (the slow part: seconds, once per process)."""
    glossary = Glossary.load(settings.glossary_path)
    return Components(
        settings=settings,
        embedder=embedder or Embedder.from_settings(settings),
        tokenizer=Tokenizer(glossary.chinese_terms),
        glossary=glossary,
        store=IndexStore(settings.index_root),
    )


def ensure_snapshot(
    parts: Components, *, force: bool = False, show_progress: bool = False
) -> tuple[Snapshot, bool]:
    """Build and save the index if it is missing or stale, then load it.

    Holds the store's change lock, so processes starting together build it once.

    Returns:
        The snapshot and whether it was (re)built.

    Raises:
        CorpusError: the corpus cannot be read.
        IndexWriteError: the new index could not be written.
    """
    with parts.store.locked():
        documents = load_corpus(parts.settings.corpus_dir)
        try:
            manifest = parts.store.current_manifest() if not force else None
        except IndexFormatError as exc:  # an older policy-qa's index: rebuild, do not refuse
            log.warning("%s; rebuilding", exc)
            manifest = None
        if not force and is_up_to_date(
            manifest, documents, model_id=parts.embedder.model_id, settings=parts.settings
        ):
            return open_snapshot(parts), False
        log.info("building index for %d documents", len(documents))
        snapshot = build_snapshot(
            documents,
            embedder=parts.embedder,
            tokenizer=parts.tokenizer,
            settings=parts.settings,
            show_progress=show_progress,
        )
        parts.store.save(snapshot)
        return snapshot, True


def open_snapshot(parts: Components, *, mmap: bool | None = None) -> Snapshot:
    """Load the saved index (memory-mapped unless settings or ``mmap`` say otherwise) and
    refuse it if it was built with another model."""
    snapshot = parts.store.load(mmap=parts.settings.mmap_index if mmap is None else mmap)
    check_compatible(snapshot.manifest, embedder=parts.embedder)
    return snapshot


def make_answerer(parts: Components) -> Answerer:
    """The answer stage over the same tokenizer and glossary as the retriever, plus the
    general vocabulary that tells it which Chinese words an English question refers to."""
    return Answerer(
        tokenizer=parts.tokenizer,
        glossary=parts.glossary,
        vocabulary=Glossary.load(parts.settings.vocabulary_path),
    )


def make_retriever(parts: Components, snapshot: Snapshot) -> Retriever:
    return Retriever(
        snapshot,
        embedder=parts.embedder,
        tokenizer=parts.tokenizer,
        glossary=parts.glossary,
        settings=parts.settings,
    )

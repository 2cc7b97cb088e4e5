"""Wire the stages together: corpus -> (build if stale) -> snapshot -> retriever.

The CLI, the service and the evaluation all open a retriever through here, so they
search exactly the same index the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from index.answer import Answerer
from index.build import is_up_to_date
from index.documents import load_corpus
from index.embedding import Embedder
from index.errors import IndexFormatError
from index.glossary import Glossary
from index.lexical import Tokenizer
from index.retriever import Retriever
from index.searchable import Searchable
from index.settings import Settings
from index.stores import Store, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Components:
    """The loaded, reusable parts behind a retriever."""

    settings: Settings
    embedder: Embedder
    tokenizer: Tokenizer
    glossary: Glossary
    store: Store


def load_components(settings: Settings, *, embedder: Embedder | None = None) -> Components:
    """Load model, tokenizer and glossary (the slow part: seconds, once per process)."""
    glossary = Glossary.load(settings.glossary_path)
    return Components(
        settings=settings,
        embedder=embedder or Embedder.from_settings(settings),
        tokenizer=Tokenizer(glossary.chinese_terms),
        glossary=glossary,
        store=open_store(settings),
    )


def ensure_snapshot(
    parts: Components, *, force: bool = False, show_progress: bool = False
) -> tuple[Searchable, bool]:
    """Build the index if it is missing or stale, then open it.

    Holds the store's change lock, so processes starting together build it once.

    Returns:
        The index and whether it was (re)built.

    Raises:
        CorpusError: the corpus cannot be read.
        IndexWriteError: the new index could not be written.
        IndexUnavailableError: the store cannot be reached.
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
        index, _ = parts.store.build(
            documents,
            embedder=parts.embedder,
            tokenizer=parts.tokenizer,
            show_progress=show_progress,
        )
        return index, True


def open_snapshot(parts: Components) -> Searchable:
    """Open the current index and refuse it if it was built with another model."""
    return parts.store.open(embedder=parts.embedder)


def make_answerer(parts: Components) -> Answerer:
    """The answer stage over the same tokenizer and glossary as the retriever, plus the
    general vocabulary that tells it which Chinese words an English question refers to."""
    return Answerer(
        tokenizer=parts.tokenizer,
        glossary=parts.glossary,
        vocabulary=Glossary.load(parts.settings.vocabulary_path),
    )


def make_retriever(parts: Components, snapshot: Searchable) -> Retriever:
    return Retriever(
        snapshot,
        embedder=parts.embedder,
        tokenizer=parts.tokenizer,
        glossary=parts.glossary,
        settings=parts.settings,
    )

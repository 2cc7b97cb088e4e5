"""Maintainer CLI: build the model and index, add/remove documents, stats, ask.

Run as ``python -m index --help`` (or the ``policy-qa`` console script).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from index.answer.messages import not_stated_message
from index.changes import DocumentChanges
from index.documents import SUPPORTED_SUFFIXES, DocumentMeta, parse_document, validate_doc_id
from index.errors import InvalidInputError, PolicyQAError
from index.pipeline import (
    Components,
    ensure_snapshot,
    load_components,
    make_answerer,
    make_retriever,
    open_snapshot,
)
from index.retriever import MODES, Mode
from index.settings import Settings
from index.snapshot import Snapshot

app = typer.Typer(
    help="policy-qa: build and query the bilingual policy index.", no_args_is_help=True
)
console = Console(soft_wrap=True)


def _components() -> Components:
    return load_components(Settings())


def _fail(error: PolicyQAError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=2)


@app.command()
def model() -> None:
    """Build the default embedding model from its package, in both precisions a machine may
    run it in (once; idempotent), so an image built on one CPU also serves on another."""
    from index.model_build import ensure_default_model

    settings = Settings()
    for precision in ("float32", "bfloat16"):
        folder = ensure_default_model(settings.default_model_dir, precision)
        console.print(f"model ready: {folder}")


@app.command()
def build(force: Annotated[bool, typer.Option(help="Rebuild even if up to date.")] = False) -> None:
    """Build the index if it is missing or stale (corpus, model or chunking changed)."""
    try:
        parts = _components()
        snapshot, built = ensure_snapshot(parts, force=force, show_progress=True)
    except PolicyQAError as error:
        raise _fail(error) from error
    verb = "built" if built else "up to date"
    console.print(
        f"index {verb}: {len(snapshot.documents)} documents, {snapshot.manifest.passages} "
        f"passages, {snapshot.manifest.index_type} in {parts.store.kind} "
        f"({parts.store.version()})"
    )


@app.command()
def add(
    source: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    doc_id: Annotated[str, typer.Option("--id", help="Stable id: lowercase letters, digits, '-'.")],
    title_zh: Annotated[str, typer.Option(help="Chinese title.")],
    title_en: Annotated[str, typer.Option(help="English title.")],
    issuer: Annotated[str, typer.Option()] = "",
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    number: Annotated[
        str | None, typer.Option(help="Document number, e.g. 国科发规〔2023〕41号")
    ] = None,
    language: Annotated[str, typer.Option()] = "zh",
    replace: Annotated[bool, typer.Option(help="Replace a document with the same id.")] = False,
) -> None:
    """Add one document to the corpus and the index without a full rebuild."""
    try:
        validate_doc_id(doc_id)
        if source.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise InvalidInputError(f"unsupported file type {source.suffix!r}")
        meta = DocumentMeta(
            id=doc_id,
            title_zh=title_zh,
            title_en=title_en,
            source=f"documents/{doc_id}{source.suffix.lower()}",
            issuer=issuer,
            date=date,
            number=number,
            language=language,
        )
        data = source.read_bytes()
        document = parse_document(meta, data)
        saved = DocumentChanges(_components()).add(document, data, replace=replace)
    except PolicyQAError as error:
        raise _fail(error) from error
    added, _ = saved.snapshot.document_size(doc_id)
    console.print(f"added {doc_id}: {added} passages; index now {saved.snapshot.manifest.passages}")


@app.command()
def remove(doc_id: Annotated[str, typer.Argument(help="Document id to remove.")]) -> None:
    """Remove one document from the index and the catalog (its source file is kept)."""
    try:
        saved = DocumentChanges(_components()).remove(doc_id)
    except PolicyQAError as error:
        raise _fail(error) from error
    console.print(f"removed {doc_id}; index now {saved.snapshot.manifest.passages} passages")


@app.command()
def stats() -> None:
    """Show what the current index holds."""
    settings = Settings()
    try:
        parts = load_components(settings)
        snapshot = open_snapshot(parts)
    except PolicyQAError as error:
        raise _fail(error) from error
    table = Table(title=f"{parts.store.kind} index {parts.store.version()}")
    for column in ("document", "title", "passages", "characters"):
        table.add_column(column)
    for doc_id, meta in snapshot.catalog.items():
        passages, characters = snapshot.document_size(doc_id)
        table.add_row(doc_id, meta.title_en, str(passages), str(characters))
    console.print(table)
    m = snapshot.manifest
    console.print(f"model {m.model_id} ({m.dimension}-d), {m.index_type}, chunking {m.chunking}")
    if isinstance(snapshot, Snapshot):
        console.print(
            f"added since the main segment was built: {snapshot.lexical.delta_size} passages, "
            f"{snapshot.dense.delta_size} vectors"
        )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question in Chinese or English.")],
    top_k: Annotated[int, typer.Option(min=1, max=20)] = 3,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical")] = "hybrid",
    doc: Annotated[list[str] | None, typer.Option(help="Restrict to a document id.")] = None,
) -> None:
    """Ask from the terminal; prints the answer (or why the documents do not state it) and
    the passages with their citations."""
    if mode not in MODES:
        raise _fail(InvalidInputError(f"mode must be one of {', '.join(MODES)}"))
    try:
        parts = _components()
        snapshot, _ = ensure_snapshot(parts)
        result = make_retriever(parts, snapshot).search(
            question, top_k=top_k, mode=_mode(mode), doc_ids=doc
        )
        answer = make_answerer(parts).answer(result)
    except PolicyQAError as error:
        raise _fail(error) from error
    console.print(f"[dim]language: {result.language.detail}; expansions: {result.expansions}[/]")
    if answer.stated:
        console.print(f"[bold green]answer:[/] {answer.text}")
        aid = answer.reading_aid
        for gloss in (*aid.catalog, *aid.terms, *aid.figures) if aid else ():
            console.print(f"  [dim]{gloss.text} = {gloss.english}[/]")
    else:
        message = not_stated_message(answer.findings, result.language.language)
        console.print(f"[bold yellow]not stated:[/] {message}")
    for rank, hit in enumerate(result.hits, start=1):
        console.print(f"\n[bold][{rank}][/] [cyan]{hit.title}[/] › {hit.section or '—'}")
        console.print(f"[dim]{hit.doc_id} chars {hit.start}-{hit.end}, score {hit.score:.3f}[/]")
        console.print(hit.text)


def _mode(value: str) -> Mode:
    for mode in MODES:
        if mode == value:
            return mode
    raise InvalidInputError(value)

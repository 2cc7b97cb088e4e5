"""Sentence-transformers embeddings with the model's query/passage prompts.

The default model is multilingual-e5-small built locally from a package (no hub access);
any other sentence-transformers model is one setting away and takes the same code path.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np

from index.errors import ModelError
from index.settings import DEFAULT_MODEL, Settings

QUERY_CACHE_SIZE = 1024


class Embedder:
    """Embeds passages in batches and queries one at a time (with an LRU cache)."""

    def __init__(
        self,
        model: Any,
        *,
        model_id: str,
        query_prompt: str,
        passage_prompt: str,
        batch_size: int = 32,
    ) -> None:
        self._model = model
        self.model_id = model_id
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.dimension = int(model.get_embedding_dimension())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()

    @property
    def model(self) -> Any:
        """The underlying SentenceTransformer."""
        return self._model

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        """Load (building first if needed) the configured model on the CPU.

        Raises:
            ModelError: the model cannot be found or loaded.
        """
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        location, model_id = resolve_model(settings)
        try:
            model = SentenceTransformer(location, device="cpu")
        except Exception as exc:  # hub errors, missing files, bad configs all end here
            raise ModelError(f"cannot load embedding model {location!r}: {exc}") from exc
        model.eval()
        return cls(
            model,
            model_id=model_id,
            query_prompt=settings.query_prompt,
            passage_prompt=settings.passage_prompt,
            batch_size=settings.embed_batch_size,
        )

    def embed_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(list(texts), self.passage_prompt, show_progress=show_progress)

    def embed_query(self, text: str) -> np.ndarray:
        """A unit-length float32 vector of shape ``(dimension,)``; repeated questions are cached."""
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        vector: np.ndarray = self._encode([text], self.query_prompt, show_progress=False)[0]
        vector.setflags(write=False)
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return vector

    def _encode(self, texts: list[str], prompt: str, *, show_progress: bool) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vectors: np.ndarray = self._model.encode(
                texts,
                prompt=prompt,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def resolve_model(settings: Settings) -> tuple[str, str]:
    """Where to load the model from, and the id recorded in index manifests."""
    if settings.model != DEFAULT_MODEL:
        return settings.model, settings.model
    from index.model_build import ensure_default_model

    folder = ensure_default_model(settings.default_model_dir)
    return str(folder), default_model_id(folder)


def default_model_id(folder: Path) -> str:
    """The built model's id, pinned to the exact weights it was made from."""
    try:
        provenance = json.loads((folder / "policy_qa_model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model folder {folder} has no provenance file: {exc}") from exc
    weights = str(provenance.get("source_sha256", provenance.get("sha256", "")))[:12]
    return f"{provenance.get('model_id', 'intfloat/multilingual-e5-small')}@{weights}"
